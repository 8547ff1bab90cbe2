//! The schema and its forward-only migrations. `PRAGMA user_version` holds the
//! number of migrations applied; a migration is never edited once released.

use rusqlite::Connection;

/// Each entry moves the schema one version forward.
const MIGRATIONS: &[&str] = &[
    // 1: the spine's data model.
    r#"
    CREATE TABLE spans (
        id INTEGER PRIMARY KEY,
        trace_id BLOB NOT NULL,
        span_id BLOB NOT NULL,
        parent_span_id BLOB,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER,
        status TEXT NOT NULL,
        status_message TEXT,
        agent_id TEXT,
        session_id TEXT,
        user_id TEXT,
        operation TEXT,
        provider TEXT,
        request_model TEXT,
        response_model TEXT,
        input_tokens INTEGER,
        output_tokens INTEGER,
        total_tokens INTEGER,
        cache_read_tokens INTEGER,
        cache_write_tokens INTEGER,
        reasoning_tokens INTEGER,
        cost_usd REAL,
        cost_source TEXT,
        finish_reasons TEXT,
        tool_name TEXT,
        tool_call_id TEXT,
        error_type TEXT,
        latency_ms REAL,
        input_text TEXT,
        input_text_len INTEGER,
        output_text TEXT,
        output_text_len INTEGER,
        attributes TEXT,
        resource TEXT,
        source TEXT NOT NULL,
        received_ns INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX spans_identity ON spans(trace_id, span_id);
    CREATE INDEX spans_start ON spans(start_ns);

    CREATE TABLE traces (
        trace_id BLOB PRIMARY KEY,
        root_span_id BLOB,
        root_name TEXT,
        parent_trace_id BLOB,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER,
        status TEXT NOT NULL,
        span_count INTEGER NOT NULL,
        error_count INTEGER NOT NULL,
        llm_calls INTEGER NOT NULL,
        tool_calls INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        cost_usd REAL,
        agent_id TEXT,
        session_id TEXT,
        user_id TEXT,
        updated_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX traces_start ON traces(start_ns);
    CREATE INDEX traces_parent ON traces(parent_trace_id) WHERE parent_trace_id IS NOT NULL;

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL,
        type TEXT NOT NULL,
        time_ns INTEGER NOT NULL,
        name TEXT NOT NULL,
        severity TEXT NOT NULL,
        message TEXT,
        stack_trace TEXT,
        category TEXT,
        trace_id BLOB,
        span_id BLOB,
        agent_id TEXT,
        session_id TEXT,
        user_id TEXT,
        attributes TEXT,
        resource TEXT,
        source TEXT NOT NULL,
        received_ns INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX events_uid ON events(uid);
    CREATE INDEX events_type_time ON events(type, time_ns);
    CREATE INDEX events_time ON events(time_ns);
    CREATE INDEX events_trace ON events(trace_id) WHERE trace_id IS NOT NULL;

    CREATE TABLE metric_points (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        unit TEXT NOT NULL,
        kind TEXT NOT NULL,
        time_ns INTEGER NOT NULL,
        start_time_ns INTEGER,
        value REAL,
        count INTEGER,
        sum REAL,
        min REAL,
        max REAL,
        bounds TEXT,
        bucket_counts TEXT,
        temporality TEXT,
        monotonic INTEGER,
        attributes TEXT,
        resource TEXT,
        source TEXT NOT NULL
    );
    CREATE INDEX metric_points_name_time ON metric_points(name, time_ns);
    CREATE INDEX metric_points_time ON metric_points(time_ns);

    -- Each sink's position in each table: rows with id <= last_id are shipped.
    CREATE TABLE sink_cursors (
        sink TEXT NOT NULL,
        tbl TEXT NOT NULL,
        last_id INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        PRIMARY KEY (sink, tbl)
    ) WITHOUT ROWID;

    -- Counters that must survive restarts (rows deleted by retention, ...).
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: spans reported in pieces, and where file and database readers stopped.
    r#"
    -- A natural key (an LLM response, say) naming one span across sources that cannot
    -- know each other's ids; provisional = the span's ids were made up by its source.
    -- (Schema 14 keys it by the text's digest: store::merge::MIGRATION.)
    CREATE TABLE span_keys (
        key TEXT PRIMARY KEY,
        trace_id BLOB NOT NULL,
        span_id BLOB NOT NULL,
        provisional INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX span_keys_span ON span_keys(trace_id, span_id);

    -- Each reader's position in each file or database it follows (log tailer, transcripts).
    CREATE TABLE source_offsets (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT,
        position INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        PRIMARY KEY (source, key)
    ) WITHOUT ROWID;
    "#,
    // 3: cost, usage rollups, budget alerts, baselines (src/analytics/).
    r#"
    -- The price table's figure when it differs from a reported cost_usd.
    ALTER TABLE spans ADD COLUMN cost_computed_usd REAL;

    -- LLM and embedding calls per hour and owner; '' stands for "not set".
    -- Kept when retention deletes the spans, so old sessions still add up.
    CREATE TABLE usage_hourly (
        hour_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        priced_calls INTEGER NOT NULL,
        latency_ms_sum REAL NOT NULL,
        latency_count INTEGER NOT NULL,
        PRIMARY KEY (hour_ns, agent_id, session_id, user_id, provider, model)
    ) WITHOUT ROWID;

    -- Latency histogram per rollup row: log buckets of ratio 1.02 (1% relative error).
    CREATE TABLE usage_latency_hourly (
        hour_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour_ns, agent_id, session_id, user_id, provider, model, bucket)
    ) WITHOUT ROWID;

    -- One row per budget, period and threshold that alerted: alerts fire once.
    CREATE TABLE budget_alerts (
        budget TEXT NOT NULL,
        period TEXT NOT NULL,
        threshold INTEGER NOT NULL,
        spent REAL NOT NULL,
        limit_value REAL NOT NULL,
        fired_ns INTEGER NOT NULL,
        PRIMARY KEY (budget, period, threshold)
    ) WITHOUT ROWID;

    -- An agent's recent runs, for baselines.
    CREATE INDEX traces_agent_start ON traces(agent_id, start_ns) WHERE agent_id IS NOT NULL;
    "#,
    // 4: records a sink's remote rejected on their own (kept for inspection and replay).
    r#"
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        sink TEXT NOT NULL,
        tbl TEXT NOT NULL,
        row_id INTEGER NOT NULL,
        record_id TEXT NOT NULL,
        status INTEGER,
        error TEXT NOT NULL,
        payload TEXT,
        created_ns INTEGER NOT NULL
    );
    CREATE INDEX dead_letters_sink ON dead_letters(sink, id);
    "#,
    // 5: alerts waiting for the webhook; usage days kept after their hours are pruned.
    r#"
    -- Alerts queued for OCT_ALERT_WEBHOOK in the transaction that raised them, delivered
    -- in id order past the cursor in sink_cursors (sink 'alert_webhook'). AUTOINCREMENT:
    -- ids are never reused once delivered rows are deleted, so the cursor never skips one.
    CREATE TABLE alert_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL
    );

    -- usage_hourly rows folded into their UTC day once older than the age retention.
    CREATE TABLE usage_daily (
        day_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        priced_calls INTEGER NOT NULL,
        latency_ms_sum REAL NOT NULL,
        latency_count INTEGER NOT NULL,
        PRIMARY KEY (day_ns, agent_id, session_id, user_id, provider, model)
    ) WITHOUT ROWID;

    CREATE TABLE usage_latency_daily (
        day_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day_ns, agent_id, session_id, user_id, provider, model, bucket)
    ) WITHOUT ROWID;

    -- All usage, hours and folded days alike (a day as its first hour): what queries read.
    CREATE VIEW usage_all AS
        SELECT hour_ns, agent_id, session_id, user_id, provider, model, calls, errors,
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum, latency_count
        FROM usage_hourly
        UNION ALL
        SELECT day_ns, agent_id, session_id, user_id, provider, model, calls, errors,
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum, latency_count
        FROM usage_daily;

    CREATE VIEW usage_latency_all AS
        SELECT hour_ns, agent_id, session_id, user_id, provider, model, bucket, count
        FROM usage_latency_hourly
        UNION ALL
        SELECT day_ns, agent_id, session_id, user_id, provider, model, bucket, count
        FROM usage_latency_daily;
    "#,
    // 6: a key for metric points a client may send again (series identity), so a
    // retried export is stored once. Partial: points made here (host) need no entry.
    r#"
    ALTER TABLE metric_points ADD COLUMN point_key INTEGER;
    CREATE UNIQUE INDEX metric_points_key ON metric_points(time_ns, point_key)
        WHERE point_key IS NOT NULL;
    "#,
    // 7: host metric points older than the raw window, rolled into per-step aggregates.
    r#"
    CREATE TABLE metric_rollups (
        name TEXT NOT NULL,
        -- The points' attributes JSON, '' when they had none.
        attributes TEXT NOT NULL,
        bucket_ns INTEGER NOT NULL,
        step_ns INTEGER NOT NULL,
        unit TEXT NOT NULL,
        kind TEXT NOT NULL,
        temporality TEXT,
        monotonic INTEGER,
        source TEXT NOT NULL,
        count INTEGER NOT NULL,
        sum REAL NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        last REAL NOT NULL,
        last_ns INTEGER NOT NULL,
        -- Running totals: the increase over the bucket (from the point before it)
        -- and the seconds it took, so rates survive the rollup.
        increase REAL,
        increase_secs REAL,
        -- Time first: queries, expiry and the rollup itself all read by time range.
        PRIMARY KEY (bucket_ns, name, attributes)
    ) WITHOUT ROWID;
    "#,
    // 8: what the dashboard reads, fast on a million spans.
    r#"
    -- The runs of one session in time order; sessions by their latest run (index only).
    CREATE INDEX traces_session_start ON traces(session_id, start_ns)
        WHERE session_id IS NOT NULL;
    -- Runs and their tool calls over a range (the overview) from the index alone; in
    -- (start, id) order, it serves all traces_start served. (No index for sort=cost: one
    -- keyed on a cost that grows with each span cut native ingest by about a fifth.)
    CREATE INDEX traces_start_tools ON traces(start_ns, trace_id, tool_calls);
    DROP INDEX traces_start;

    -- The usage rollups without the session dimension (session_id always ''): the same
    -- sums in far fewer rows, read by every usage query not about sessions.
    CREATE TABLE usage_hourly_nosession (
        hour_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        priced_calls INTEGER NOT NULL,
        latency_ms_sum REAL NOT NULL,
        latency_count INTEGER NOT NULL,
        PRIMARY KEY (hour_ns, agent_id, session_id, user_id, provider, model)
    ) WITHOUT ROWID;
    CREATE TABLE usage_daily_nosession (
        day_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        priced_calls INTEGER NOT NULL,
        latency_ms_sum REAL NOT NULL,
        latency_count INTEGER NOT NULL,
        PRIMARY KEY (day_ns, agent_id, session_id, user_id, provider, model)
    ) WITHOUT ROWID;
    CREATE TABLE usage_latency_hourly_nosession (
        hour_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour_ns, agent_id, session_id, user_id, provider, model, bucket)
    ) WITHOUT ROWID;
    CREATE TABLE usage_latency_daily_nosession (
        day_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day_ns, agent_id, session_id, user_id, provider, model, bucket)
    ) WITHOUT ROWID;
    INSERT INTO usage_hourly_nosession
        SELECT hour_ns, agent_id, '', user_id, provider, model, sum(calls), sum(errors), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), sum(total_tokens), sum(cost_usd), sum(priced_calls), sum(latency_ms_sum), sum(latency_count)
        FROM usage_hourly GROUP BY hour_ns, agent_id, user_id, provider, model;
    INSERT INTO usage_daily_nosession
        SELECT day_ns, agent_id, '', user_id, provider, model, sum(calls), sum(errors), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), sum(total_tokens), sum(cost_usd), sum(priced_calls), sum(latency_ms_sum), sum(latency_count)
        FROM usage_daily GROUP BY day_ns, agent_id, user_id, provider, model;
    INSERT INTO usage_latency_hourly_nosession
        SELECT hour_ns, agent_id, '', user_id, provider, model, bucket, sum(count)
        FROM usage_latency_hourly GROUP BY hour_ns, agent_id, user_id, provider, model, bucket;
    INSERT INTO usage_latency_daily_nosession
        SELECT day_ns, agent_id, '', user_id, provider, model, bucket, sum(count)
        FROM usage_latency_daily GROUP BY day_ns, agent_id, user_id, provider, model, bucket;

    CREATE VIEW usage_all_nosession AS
        SELECT hour_ns, agent_id, session_id, user_id, provider, model, calls, errors,
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum, latency_count
        FROM usage_hourly_nosession
        UNION ALL
        SELECT day_ns, agent_id, session_id, user_id, provider, model, calls, errors,
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum, latency_count
        FROM usage_daily_nosession;

    CREATE VIEW usage_latency_all_nosession AS
        SELECT hour_ns, agent_id, session_id, user_id, provider, model, bucket, count
        FROM usage_latency_hourly_nosession
        UNION ALL
        SELECT day_ns, agent_id, session_id, user_id, provider, model, bucket, count
        FROM usage_latency_daily_nosession;
    "#,
    // 9 (usage days): usage by UTC day without the session dimension, kept at write
    // time (not only when retention folds hours), each row with its latency histogram
    // in one text field, so a month of usage with percentiles reads a few thousand rows.
    r#"
    -- One row per UTC day, agent, user, provider and model: every call of that day
    -- (hours and folded days alike). Never folded; pruned with the other usage rows.
    -- latency_hist: the row's histogram as 'bucket:count' pairs joined by ',' (buckets
    -- as in usage_latency_*; order free; NULL or '' when no call had a latency).
    CREATE TABLE usage_days (
        day_ns INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        priced_calls INTEGER NOT NULL,
        latency_ms_sum REAL NOT NULL,
        latency_count INTEGER NOT NULL,
        latency_hist TEXT,
        PRIMARY KEY (day_ns, agent_id, user_id, provider, model)
    ) WITHOUT ROWID;
    -- Backfill from the rollups without sessions: live hours and folded days.
    INSERT INTO usage_days (day_ns, agent_id, user_id, provider, model, calls, errors,
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum,
            latency_count)
        SELECT d, agent_id, user_id, provider, model, sum(calls), sum(errors),
            sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
            sum(cache_write_tokens), sum(reasoning_tokens), sum(total_tokens), sum(cost_usd),
            sum(priced_calls), sum(latency_ms_sum), sum(latency_count)
        FROM (
            SELECT hour_ns - (((hour_ns % 86400000000000) + 86400000000000) % 86400000000000) AS d,
                agent_id, user_id, provider, model, calls, errors, input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens, reasoning_tokens, total_tokens,
                cost_usd, priced_calls, latency_ms_sum, latency_count
            FROM usage_hourly_nosession
            UNION ALL
            SELECT day_ns, agent_id, user_id, provider, model, calls, errors, input_tokens,
                output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
                total_tokens, cost_usd, priced_calls, latency_ms_sum, latency_count
            FROM usage_daily_nosession
        ) WHERE true
        GROUP BY d, agent_id, user_id, provider, model;
    INSERT INTO usage_days (day_ns, agent_id, user_id, provider, model, calls, errors,
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum,
            latency_count, latency_hist)
        SELECT d, agent_id, user_id, provider, model, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0.0, 0,
            group_concat(bucket || ':' || c, ',')
        FROM (
            SELECT d, agent_id, user_id, provider, model, bucket, sum(count) AS c
            FROM (
                SELECT hour_ns - (((hour_ns % 86400000000000) + 86400000000000) % 86400000000000) AS d,
                    agent_id, user_id, provider, model, bucket, count
                FROM usage_latency_hourly_nosession
                UNION ALL
                SELECT day_ns, agent_id, user_id, provider, model, bucket, count
                FROM usage_latency_daily_nosession
            ) WHERE true
            GROUP BY d, agent_id, user_id, provider, model, bucket
            HAVING c != 0
        ) WHERE true
        GROUP BY d, agent_id, user_id, provider, model
        ON CONFLICT DO UPDATE SET latency_hist = excluded.latency_hist;
    DELETE FROM usage_days WHERE calls = 0;
    "#,
    // audit: the tamper-evident chain and its signed heads (store::audit).
    super::audit::MIGRATION,
    // activity: the daemon's own administrative and security events (store::activity).
    super::activity::MIGRATION,
    // sampling: each run's sampling decision, and what a dropped run keeps (analytics::sampling).
    crate::analytics::sampling::MIGRATION,
    // codec: the dictionaries span values are packed with (store::codec).
    super::codec::MIGRATION,
    // span keys by digest (store::merge).
    super::merge::MIGRATION,
    // spans changed after they were stored, for the sinks that ship them again
    // (store::span_changes).
    super::span_changes::MIGRATION,
    // audit `changes` entries packed compactly (store::audit::Changes).
    super::audit::COMPACT_CHANGES_MIGRATION,
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "database schema version {found} is newer than this build understands ({supported}); upgrade openclaw-trace"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("migration to version {version} failed: {source}")]
    Failed {
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies every migration not yet applied, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<i64, MigrateError> {
    // Every connection that writes packs span values (and reads them back).
    super::codec::register(conn)?;
    super::merge::register(conn)?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT_VERSION {
        return Err(MigrateError::TooNew {
            found,
            supported: CURRENT_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", version))
            .map_err(|source| MigrateError::Failed { version, source })?;
        tx.commit()?;
    }
    Ok(CURRENT_VERSION)
}

/// The tables a sink can ship, with their time column (for age retention).
pub const DATA_TABLES: &[(&str, &str)] = &[
    ("spans", "start_ns"),
    ("events", "time_ns"),
    ("metric_points", "time_ns"),
    ("span_changes", "time_ns"),
];
