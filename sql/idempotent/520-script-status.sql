-- admmgt.script_status: how far each script has spread, from the registry.
-- Counted over created tenants (status 2, not removed): applied = at or past
-- the script; held back = behind it with updateflag false (applyScripts skips
-- them); of the updating ones behind it, failed = its last error names the
-- script or its latest run_log row for the script failed, pending = the rest.
-- An overtaken script (not on the template, and a later script is) is in no
-- database, whatever the versions say: it is never applied out of order.
CREATE VIEW admmgt.script_status AS
WITH tenants AS (
    SELECT
        v.dbname,
        v.cluster_name,
        v.updateflag,
        v.last_error,
        coalesce(v.scriptversion, 0) AS version
    FROM admmgt.vendor_db_settings AS v
    WHERE NOT v.deleted AND NOT v.istemplate AND v.status = 2
),

spread AS (
    SELECT
        s.id AS scriptid,
        t.updateflag,
        t.version >= s.id AND NOT s.overtaken AS has_it,
        t.version < s.id
        AND (
            coalesce(t.last_error LIKE '%script ' || s.id || ' failed%', false)
            OR coalesce((
                SELECT l.outcome = 'failed'
                FROM admmgt.run_log AS l
                WHERE
                    l.dbname = lower(t.dbname) AND l.cluster_name = coalesce(t.cluster_name, 'local')
                    AND l.scriptid = s.id
                ORDER BY l.finished_at DESC, l.id DESC
                LIMIT 1
            ), false)
        ) AS failed_on_it
    FROM (
        SELECT
            x.*,
            x.applied_to_template_at IS NULL AND x.status IN (0, 3) AND EXISTS (
                SELECT FROM admmgt.scripts AS later
                WHERE later.id > x.id AND later.applied_to_template_at IS NOT NULL
            ) AS overtaken
        FROM admmgt.scripts AS x
    ) AS s
    CROSS JOIN tenants AS t
)

SELECT
    s.id,
    s.description,
    s.status,
    CASE
        WHEN
            s.applied_to_template_at IS NULL AND s.status IN (0, 3) AND EXISTS (
                SELECT FROM admmgt.scripts AS later
                WHERE later.id > s.id AND later.applied_to_template_at IS NOT NULL
            )
            THEN 'overtaken'
        WHEN s.status = 0 THEN 'designing'
        WHEN s.status = 1 THEN 'ready'
        WHEN s.status = 2 THEN 'applied'
        WHEN s.status = 3 THEN 'failed'
    END AS status_word,
    s.applied_to_template_at IS NOT NULL AS on_template,
    count(p.scriptid) FILTER (WHERE p.has_it)::integer AS databases_applied,
    count(p.scriptid) FILTER (
        WHERE p.updateflag AND NOT p.has_it AND NOT p.failed_on_it
    )::integer AS databases_pending,
    count(p.scriptid) FILTER (
        WHERE p.updateflag AND p.failed_on_it
    )::integer AS databases_failed,
    count(p.scriptid) FILTER (
        WHERE NOT p.updateflag AND NOT p.has_it
    )::integer AS databases_held_back,
    s.last_error
FROM admmgt.scripts AS s
LEFT JOIN spread AS p ON s.id = p.scriptid
GROUP BY s.id;

COMMENT ON VIEW admmgt.script_status IS
'Per script: how many created tenants have it (applied), still need it (pending), failed on it, or are held back (updateflag false) behind it. From the registry; each tenant''s own admmgt.script_history is the truth it is reconciled from.';
COMMENT ON COLUMN admmgt.script_status.id IS 'Script id (the version number).';
COMMENT ON COLUMN admmgt.script_status.description IS 'What the script does.';
COMMENT ON COLUMN admmgt.script_status.status IS '0 designing, 1 ready, 2 applied everywhere, 3 failed (on the template or in validation).';
COMMENT ON COLUMN admmgt.script_status.status_word IS 'status in words; overtaken: status 0 or 3, not on the template while a later script is (rolled back, then overtaken): never applied out of order, counted in no database; copy its rows into a new script.';
COMMENT ON COLUMN admmgt.script_status.on_template IS 'True once the script was applied to the template.';
COMMENT ON COLUMN admmgt.script_status.databases_applied IS 'Created tenants whose scriptversion is at or above the script (none for an overtaken script).';
COMMENT ON COLUMN admmgt.script_status.databases_pending IS 'Updating tenants behind the script that have not failed on it: the next applyScripts brings them.';
COMMENT ON COLUMN admmgt.script_status.databases_failed IS 'Updating tenants behind the script whose last_error names it or whose latest run_log row for it failed.';
COMMENT ON COLUMN admmgt.script_status.databases_held_back IS 'Tenants behind the script with updateflag false: applyScripts skips them.';
COMMENT ON COLUMN admmgt.script_status.last_error IS 'Why the script failed validation or failed on the template (status 3).';
