-- (0007: main took 0006 for e-mail codes.) The admin API lists locked users and queries the audit log by kind.
CREATE INDEX failure_streaks_locked ON failure_streaks (locked_until);
CREATE INDEX audit_kind ON audit (kind, id);
