-- 0001_initial: the audit log of decisions, the latest snapshot of every
-- account, rejected events, and the views operators and Grafana read.
--
-- Every table keeps the Kafka partition and offset it was written from: they
-- make replays harmless (an id seen again adds nothing, an older snapshot never
-- replaces a newer one) and let anyone find the original record.

-- Conversions that give NULL instead of failing, so one odd value inside a
-- snapshot's JSON cannot break a view for every account.
CREATE FUNCTION try_numeric(value text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN value::numeric;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

CREATE FUNCTION try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

CREATE FUNCTION jsonb_reason_codes(reasons jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(r ->> 'code') FILTER (WHERE r ->> 'code' IS NOT NULL),
                    '{}')
    FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(reasons) = 'array' THEN reasons ELSE '[]' END
    ) AS r
$$;


-- ---- audit_log: one row per order decision and status change ---------------

CREATE TABLE audit_log (
    output_id        text        PRIMARY KEY,   -- the output event's id
    type             text        NOT NULL,      -- credit.order.approved, ...
    source           text,
    account          text        NOT NULL,      -- company/customer_id
    company          text        NOT NULL,
    customer_id      text        NOT NULL,
    order_id         text,                      -- order decisions only
    status           text,                      -- status changes only: the new status
    reason_codes     text[]      NOT NULL DEFAULT '{}',
    reasons          jsonb       NOT NULL DEFAULT '[]',
    cause_id         text,                      -- causationid: "source/id" of the input
    event_time       timestamptz,               -- business time of the cause
    data             jsonb       NOT NULL,      -- the event's data, as published
    kafka_partition  integer     NOT NULL,
    kafka_offset     bigint      NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_account_time ON audit_log (account, event_time);
CREATE INDEX audit_log_type_time ON audit_log (type, event_time);
-- "why was order X blocked?" and "what did input event Y cause?"
CREATE INDEX audit_log_order ON audit_log (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX audit_log_cause ON audit_log (cause_id) WHERE cause_id IS NOT NULL;

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Decisions are corrected by new events, never by editing the log.';
END
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();


-- ---- account_snapshots: the latest credit.account.snapshot per account ------

CREATE TABLE account_snapshots (
    account              text        PRIMARY KEY,
    company              text        NOT NULL,
    customer_id          text        NOT NULL,
    status               text,                  -- OK, WARNING, HOLD
    reason_codes         text[]      NOT NULL DEFAULT '{}',
    currency             text,                  -- the account currency
    risk_class           text,
    exposure_total       numeric,
    overdue_amount       numeric,
    oldest_overdue_days  integer,
    credit_limit         numeric,
    effective_limit      numeric,
    available_credit     numeric,
    utilization          numeric,               -- exposure / effective limit
    blocked_orders_count integer     NOT NULL DEFAULT 0,
    as_of                timestamptz,
    output_id            text        NOT NULL,  -- id of the snapshot event
    data                 jsonb       NOT NULL,  -- the whole snapshot
    kafka_partition      integer     NOT NULL,
    kafka_offset         bigint      NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX account_snapshots_status ON account_snapshots (status);
CREATE INDEX account_snapshots_exposure
    ON account_snapshots (exposure_total DESC NULLS LAST);


-- ---- rejected_events: input the service could not apply ---------------------

CREATE TABLE rejected_events (
    output_id        text        PRIMARY KEY,
    error            text        NOT NULL,
    event            jsonb,                     -- the original (text if it was not JSON)
    origin           jsonb,                     -- topic, partition, offset of the original
    cause_id         text,
    event_time       timestamptz,               -- the original's time, when it had one
    kafka_partition  integer     NOT NULL,
    kafka_offset     bigint      NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rejected_events_recorded ON rejected_events (recorded_at);


-- ---- views ------------------------------------------------------------------

CREATE VIEW accounts_on_hold AS
SELECT s.account,
       s.company,
       s.customer_id,
       s.reason_codes,
       s.data -> 'reasons' AS reasons,
       s.currency,
       s.exposure_total,
       s.credit_limit,
       s.effective_limit,
       s.utilization,
       s.overdue_amount,
       s.oldest_overdue_days,
       s.blocked_orders_count,
       -- the latest move into HOLD; a change of reasons while on HOLD does not count
       (SELECT max(a.event_time)
          FROM audit_log a
         WHERE a.account = s.account
           AND a.type = 'credit.account.status_changed'
           AND a.status = 'HOLD'
           AND a.data ->> 'previous_status' IS DISTINCT FROM 'HOLD') AS hold_since,
       s.as_of,
       s.updated_at
  FROM account_snapshots s
 WHERE s.status = 'HOLD';

CREATE VIEW blocked_orders AS
SELECT s.account,
       s.company,
       s.customer_id,
       o ->> 'order_id' AS order_id,
       try_numeric(o ->> 'amount') AS amount,
       o ->> 'currency' AS currency,
       jsonb_reason_codes(o -> 'reasons') AS reason_codes,
       o -> 'reasons' AS reasons,
       try_timestamptz(o ->> 'blocked_at') AS blocked_at,
       s.status AS account_status,
       s.as_of
  FROM account_snapshots s
 CROSS JOIN LATERAL jsonb_array_elements(
           CASE WHEN jsonb_typeof(s.data -> 'blocked_orders') = 'array'
                THEN s.data -> 'blocked_orders' ELSE '[]' END
       ) AS o;

-- Amounts are in each account's own currency: compare within one currency.
CREATE VIEW largest_exposures AS
SELECT s.account,
       s.company,
       s.customer_id,
       s.status,
       s.currency,
       s.exposure_total,
       s.credit_limit,
       s.effective_limit,
       s.available_credit,
       s.utilization,
       s.overdue_amount,
       s.oldest_overdue_days,
       s.as_of
  FROM account_snapshots s
 WHERE s.exposure_total > 0
 ORDER BY s.exposure_total DESC, s.account;

CREATE VIEW overdue_aging AS
SELECT s.currency,
       b.key AS bucket,
       sum(try_numeric(b.value)) AS amount,
       count(*) FILTER (WHERE try_numeric(b.value) > 0) AS accounts
  FROM account_snapshots s
 CROSS JOIN LATERAL jsonb_each_text(
           CASE WHEN jsonb_typeof(s.data -> 'overdue' -> 'buckets') = 'object'
                THEN s.data -> 'overdue' -> 'buckets' ELSE '{}' END
       ) AS b
 GROUP BY s.currency, b.key;
