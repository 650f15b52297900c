"""Throwaway measurement (not committed): maintenance, retention and drift at N schemas."""
import os, time
from psycopg import sql
from tests.db import clock
from tests.db.fleet import make_schema_fleet, Notices
from tests.db.test_maintenance import range_table

N = int(os.environ.get("MAINT_N", "1000"))

def timed(what, f):
    t = time.monotonic(); f(); dt = time.monotonic() - t
    print(f"{what}: {dt:.1f} s ({1000 * dt / N:.1f} ms per schema), load {os.getloadavg()[0]:.1f}", flush=True)

def test_bench(cluster_dsn, admin, tenant_prefix):
    t = time.monotonic()
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, N)
    with fleet.connect() as conn:
        for schema in fleet.schemas:
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint, on_day date NOT NULL, note text) PARTITION BY RANGE (on_day)").format(sql.Identifier(schema, "ev")))
            conn.execute(sql.SQL("CREATE INDEX ON {} (on_day)").format(sql.Identifier(schema, "ev")))
    print(f"setup {N} schemas: {time.monotonic() - t:.1f} s", flush=True)
    print(admin.execute("SELECT value FROM admmgt.settings WHERE name = 'max_parallel'").fetchone())
    clock.pin(admin, "2026-06-15")
    range_table(admin, 1, "ev", "month")
    admin.execute("UPDATE admmgt.scripts SET status = 2")
    admin.execute("UPDATE admmgt.script_tables SET lifecycle = '{\"retention\": \"1 month\", \"action\": \"drop\"}'")
    notices = Notices(admin)
    timed("applyMaintenance(0), 2 partitions each", lambda: admin.execute("CALL admmgt.applyMaintenance(t_separatedb => 0, t_numdays => 40)"))
    print(notices.take()[-1])
    timed("applyMaintenance(0), nothing to create", lambda: admin.execute("CALL admmgt.applyMaintenance(t_separatedb => 0, t_numdays => 40)"))
    print(notices.take()[-1])
    timed("detect_drift(NULL, 0), all identical", lambda: admin.execute("SELECT count(*) FROM admmgt.detect_drift(NULL, 0)").fetchone())
    print(notices.take()[-1])
    with fleet.connect() as conn:
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN x int").format(sql.Identifier(fleet.tenants[5], "ev")))
    rows = []
    timed("detect_drift(NULL, 0), one differs", lambda: rows.append(admin.execute("SELECT * FROM admmgt.detect_drift(NULL, 0)").fetchall()))
    print(rows[0], notices.take()[-1])
    clock.pin(admin, "2026-09-15")
    timed("lifecycleMgt(0), 1 partition dropped each", lambda: admin.execute("CALL admmgt.lifecycleMgt(0)"))
    print(notices.take()[-1])
    timed("lifecycleMgt(0), nothing expired", lambda: admin.execute("CALL admmgt.lifecycleMgt(0)"))
    print(notices.take()[-1])
