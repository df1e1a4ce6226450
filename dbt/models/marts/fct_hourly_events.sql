-- Events per hour and type; total_amount sums the amounts present (events without an amount
-- add 0). Same figures as the Spark gold table gold/hourly_stats.
--
-- Incremental like fct_daily_revenue: a run recomputes every hour of the days holding events
-- loaded into silver since the previous run (a late event lands a day later and changes its own
-- day), merged on (event_hour, event_type).
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        file_format='delta',
        unique_key=['event_hour', 'event_type'],
        partition_by=['event_date'],
        on_schema_change='fail'
    )
}}

with

{% if is_incremental() %}
changed_days as (

    {{ changed_dates(ref('stg_events'), 'event_date', loaded_at_column='ingested_at') }}

),
{% endif %}

events as (

    select
        event_type,
        event_amount,
        event_hour,
        event_date,
        ingested_at
    from {{ ref('stg_events') }}
    {% if is_incremental() %}
    where event_date in (select changed_date from changed_days)
    {% endif %}

),

hourly as (

    select
        event_hour,
        event_date,
        event_type,
        count(*) as event_count,
        cast(coalesce(sum(event_amount), 0) as decimal(20, 2)) as total_amount,
        max(ingested_at) as silver_loaded_at
    from events
    group by event_hour, event_date, event_type

)

select
    event_hour,
    event_date,
    event_type,
    event_count,
    total_amount,
    silver_loaded_at
from hourly
