{#
    The indicator recursions (EMA, MACD, Wilder's RSI) and TA-Lib's running SMA sums are
    sequential: each bar needs the state left by the one before. They are computed by one
    step function folded over the bars of a series, in bar order, in double precision and
    in the same order of operations as TA-Lib, so that the results equal talib's.

    State layout (1-based array, what int_technicals.ta_state stores):
      1 bars_seen        number of bars folded so far (= 0-based index of the next bar)
      2 sum_20           TA-Lib's running SMA(20) total, after dropping the trailing bar
      3 sum_50           same for SMA(50)
      4 sum_200          same for SMA(200)
      5 ema_12           sum of the first 12 closes while seeding, then EMA(12)
      6 ema_26           same for EMA(26); it is also MACD's slow line
      7 macd_fast        MACD's fast EMA(12): sum of closes 14..25 while seeding, then the EMA
      8 macd_signal      sum of MACD values 25..33 while seeding, then the EMA(9) of MACD
      9 avg_gain         sum of gains 1..14 while seeding, then Wilder's average gain
     10 avg_loss         same for losses
     11 prev_close       close of the last folded bar
    Elements 12..20 are this bar's outputs: sma_20, sma_50, sma_200, ema_12, ema_26, macd,
    macd_signal, macd_hist, rsi_14 (NULL where TA-Lib has no value yet).
#}

{% macro create_technicals_functions() %}
    {{ return(adapter.dispatch('create_technicals_functions')()) }}
{% endmacro %}

{% macro technicals_function_schema() %}
    {{- return(var('technicals_function_schema', 'intermediate')) -}}
{% endmacro %}

{% macro postgres__create_technicals_functions() %}
{%- set schema = technicals_function_schema() -%}
{%- set version = 'ta_v2' -%}
-- Cosmos runs many dbt processes at once, each running this hook: the advisory lock and
-- the version check keep concurrent `create or replace` from colliding.
do $tickhouse$
begin
    perform pg_advisory_xact_lock(hashtext('tickhouse.technicals_functions'));
    if exists (
        select 1
        from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = '{{ schema }}'
          and p.proname = 'ta_indicators'
          and obj_description(p.oid, 'pg_proc') = '{{ version }}'
    ) then
        return;
    end if;

    execute 'create schema if not exists {{ schema }}';

    -- fma(a, b, c) = a * b + c with a single rounding, as TA-Lib's EMA and MACD steps use
    -- it (C fma()). PostgreSQL has none, so it is emulated exactly with Dekker's product
    -- split and Knuth's two-sum.
    execute $ddl$
create or replace function {{ schema }}.ta_fma(
    a double precision,
    b double precision,
    c double precision
) returns double precision
language plpgsql immutable strict parallel safe as $fn$
declare
    p double precision := a * b;
    t double precision := 134217729.0 * a;
    a_hi double precision := t - (t - a);
    a_lo double precision := a - a_hi;
    u double precision := 134217729.0 * b;
    b_hi double precision := u - (u - b);
    b_lo double precision := b - b_hi;
    product_error double precision := ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo;
    s double precision := p + c;
    z double precision := s - p;
    sum_error double precision := (p - (s - z)) + (c - z);
begin
    return s + (sum_error + product_error);
end;
$fn$
$ddl$;

    execute $ddl$
create or replace function {{ schema }}.ta_step(
    state double precision[],
    seed double precision[],
    close double precision,
    close_lag_19 double precision,
    close_lag_49 double precision,
    close_lag_199 double precision
) returns double precision[]
language plpgsql immutable parallel safe as $fn$
declare
    s double precision[] := coalesce(state, seed, '{0,0,0,0,0,0,0,0,0,0,0}'::double precision[]);
    i bigint := s[1]::bigint;
    sum_20 double precision := s[2];
    sum_50 double precision := s[3];
    sum_200 double precision := s[4];
    ema_12 double precision := s[5];
    ema_26 double precision := s[6];
    fast double precision := s[7];
    signal double precision := s[8];
    avg_gain double precision := s[9];
    avg_loss double precision := s[10];
    prev_close double precision := s[11];
    out_sma_20 double precision;
    out_sma_50 double precision;
    out_sma_200 double precision;
    out_ema_12 double precision;
    out_ema_26 double precision;
    out_macd double precision;
    out_signal double precision;
    out_hist double precision;
    out_rsi double precision;
    diff double precision;
    macd double precision;
    total double precision;
begin
    -- SMA: TA-Lib keeps one running total per period: add the new close, emit total / n,
    -- subtract the close that leaves the window.
    sum_20 := sum_20 + close;
    if i >= 19 then
        out_sma_20 := sum_20 / 20.0;
        sum_20 := sum_20 - close_lag_19;
    end if;
    sum_50 := sum_50 + close;
    if i >= 49 then
        out_sma_50 := sum_50 / 50.0;
        sum_50 := sum_50 - close_lag_49;
    end if;
    sum_200 := sum_200 + close;
    if i >= 199 then
        out_sma_200 := sum_200 / 200.0;
        sum_200 := sum_200 - close_lag_199;
    end if;

    -- EMA: seeded with the simple average of the first n closes, then
    -- ema = fma(close - ema, k, ema) with k = 2 / (n + 1), as TA-Lib 0.8 computes it.
    if i < 12 then
        ema_12 := ema_12 + close;
        if i = 11 then
            ema_12 := ema_12 / 12.0;
            out_ema_12 := ema_12;
        end if;
    else
        ema_12 := {{ schema }}.ta_fma(close - ema_12, 2.0::double precision / 13.0, ema_12);
        out_ema_12 := ema_12;
    end if;
    if i < 26 then
        ema_26 := ema_26 + close;
        if i = 25 then
            ema_26 := ema_26 / 26.0;
            out_ema_26 := ema_26;
        end if;
    else
        ema_26 := {{ schema }}.ta_fma(close - ema_26, 2.0::double precision / 27.0, ema_26);
        out_ema_26 := ema_26;
    end if;

    -- MACD(12, 26, 9): the fast EMA is seeded over the 12 closes ending where the slow
    -- EMA starts (bars 14..25); the signal EMA is seeded over MACD values 25..33.
    if i >= 14 then
        if i <= 25 then
            fast := fast + close;
            if i = 25 then
                fast := fast / 12.0;
            end if;
        else
            fast := {{ schema }}.ta_fma(close - fast, 2.0::double precision / 13.0, fast);
        end if;
    end if;
    if i >= 25 then
        macd := fast - ema_26;
        if i <= 33 then
            signal := signal + macd;
            if i = 33 then
                signal := signal / 9.0;
            end if;
        else
            signal := {{ schema }}.ta_fma(macd - signal, 2.0::double precision / 10.0, signal);
        end if;
        if i >= 33 then
            out_macd := macd;
            out_signal := signal;
            out_hist := macd - signal;
        end if;
    end if;

    -- RSI(14), Wilder: simple averages of the first 14 gains and losses, then
    -- avg = (avg * 13 + today) * (1 / 14) (TA-Lib 0.8 multiplies by the reciprocal);
    -- 0 when both averages are 0.
    if i >= 1 then
        diff := close - prev_close;
        if i <= 14 then
            if diff < 0 then
                avg_loss := avg_loss - diff;
            else
                avg_gain := avg_gain + diff;
            end if;
            if i = 14 then
                avg_loss := avg_loss * (1.0::double precision / 14.0);
                avg_gain := avg_gain * (1.0::double precision / 14.0);
            end if;
        else
            avg_loss := avg_loss * 13.0;
            avg_gain := avg_gain * 13.0;
            if diff < 0 then
                avg_loss := avg_loss - diff;
            else
                avg_gain := avg_gain + diff;
            end if;
            avg_loss := avg_loss * (1.0::double precision / 14.0);
            avg_gain := avg_gain * (1.0::double precision / 14.0);
        end if;
        if i >= 14 then
            total := avg_gain + avg_loss;
            if total > -1e-14 and total < 1e-14 then
                out_rsi := 0.0;
            else
                out_rsi := 100.0 * (avg_gain / total);
            end if;
        end if;
    end if;

    return array[
        (i + 1)::double precision, sum_20, sum_50, sum_200, ema_12, ema_26, fast, signal,
        avg_gain, avg_loss, close,
        out_sma_20, out_sma_50, out_sma_200, out_ema_12, out_ema_26, out_macd, out_signal,
        out_hist, out_rsi
    ];
end;
$fn$
$ddl$;

    execute $ddl$
create or replace aggregate {{ schema }}.ta_indicators(
    double precision[], double precision, double precision, double precision, double precision
) (
    sfunc = {{ schema }}.ta_step,
    stype = double precision[]
)
$ddl$;

    execute $ddl$comment on aggregate {{ schema }}.ta_indicators(
        double precision[], double precision, double precision, double precision, double precision
    ) is '{{ version }}'$ddl$;
    execute 'revoke all on function {{ schema }}.ta_step(double precision[], double precision[], double precision, double precision, double precision, double precision) from public';
end
$tickhouse$;
{% endmacro %}

{#
    Snowflake: the same step as a JavaScript table function. Called partitioned by series
    and ordered by bar_start, it sees a series' bars in order and keeps the state between
    rows; JavaScript numbers are IEEE doubles, so the arithmetic is the PostgreSQL one.
#}
{% macro snowflake__create_technicals_functions() %}
{%- set schema = technicals_function_schema() -%}
create schema if not exists {{ target.database }}.{{ schema }};
create or replace function {{ target.database }}.{{ schema }}.ta_indicators(
    symbol varchar,
    bar_interval varchar,
    bar_start timestamp_tz,
    seed_state array,
    close double,
    close_lag_19 double,
    close_lag_49 double,
    close_lag_199 double
)
returns table (
    symbol varchar,
    bar_interval varchar,
    bar_start timestamp_tz,
    bar_number number,
    ta_state array,
    sma_20 double,
    sma_50 double,
    sma_200 double,
    ema_12 double,
    ema_26 double,
    macd double,
    macd_signal double,
    macd_hist double,
    rsi_14 double
)
language javascript
as
$$
{
    initialize: function (argumentInfo, context) {
        this.state = null;
    },
    processRow: function (row, rowWriter, context) {
        function fma(a, b, c) {
            var p = a * b;
            var t = 134217729.0 * a, aHi = t - (t - a), aLo = a - aHi;
            var u = 134217729.0 * b, bHi = u - (u - b), bLo = b - bHi;
            var productError = ((aHi * bHi - p) + aHi * bLo + aLo * bHi) + aLo * bLo;
            var s = p + c, z = s - p;
            var sumError = (p - (s - z)) + (c - z);
            return s + (sumError + productError);
        }
        if (this.state === null) {
            this.state = row.SEED_STATE ? row.SEED_STATE.map(Number) : [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        }
        var s = this.state, i = s[0], x = row.CLOSE;
        var out = {SYMBOL: row.SYMBOL, BAR_INTERVAL: row.BAR_INTERVAL, BAR_START: row.BAR_START,
                   SMA_20: null, SMA_50: null, SMA_200: null, EMA_12: null, EMA_26: null,
                   MACD: null, MACD_SIGNAL: null, MACD_HIST: null, RSI_14: null};
        s[1] = s[1] + x; if (i >= 19) { out.SMA_20 = s[1] / 20.0; s[1] = s[1] - row.CLOSE_LAG_19; }
        s[2] = s[2] + x; if (i >= 49) { out.SMA_50 = s[2] / 50.0; s[2] = s[2] - row.CLOSE_LAG_49; }
        s[3] = s[3] + x; if (i >= 199) { out.SMA_200 = s[3] / 200.0; s[3] = s[3] - row.CLOSE_LAG_199; }
        if (i < 12) { s[4] = s[4] + x; if (i == 11) { s[4] = s[4] / 12.0; out.EMA_12 = s[4]; } }
        else { s[4] = fma(x - s[4], 2.0 / 13.0, s[4]); out.EMA_12 = s[4]; }
        if (i < 26) { s[5] = s[5] + x; if (i == 25) { s[5] = s[5] / 26.0; out.EMA_26 = s[5]; } }
        else { s[5] = fma(x - s[5], 2.0 / 27.0, s[5]); out.EMA_26 = s[5]; }
        if (i >= 14) {
            if (i <= 25) { s[6] = s[6] + x; if (i == 25) { s[6] = s[6] / 12.0; } }
            else { s[6] = fma(x - s[6], 2.0 / 13.0, s[6]); }
        }
        if (i >= 25) {
            var macd = s[6] - s[5];
            if (i <= 33) { s[7] = s[7] + macd; if (i == 33) { s[7] = s[7] / 9.0; } }
            else { s[7] = fma(macd - s[7], 2.0 / 10.0, s[7]); }
            if (i >= 33) { out.MACD = macd; out.MACD_SIGNAL = s[7]; out.MACD_HIST = macd - s[7]; }
        }
        if (i >= 1) {
            var diff = x - s[10];
            if (i <= 14) {
                if (diff < 0) { s[9] = s[9] - diff; } else { s[8] = s[8] + diff; }
                if (i == 14) { s[9] = s[9] * (1.0 / 14.0); s[8] = s[8] * (1.0 / 14.0); }
            } else {
                s[9] = s[9] * 13.0; s[8] = s[8] * 13.0;
                if (diff < 0) { s[9] = s[9] - diff; } else { s[8] = s[8] + diff; }
                s[9] = s[9] * (1.0 / 14.0); s[8] = s[8] * (1.0 / 14.0);
            }
            if (i >= 14) {
                var total = s[8] + s[9];
                out.RSI_14 = (total > -1e-14 && total < 1e-14) ? 0.0 : 100.0 * (s[8] / total);
            }
        }
        s[10] = x;
        s[0] = i + 1;
        out.BAR_NUMBER = s[0];
        out.TA_STATE = s.slice(0, 11);
        rowWriter.writeRow(out);
    }
}
$$;
{% endmacro %}
