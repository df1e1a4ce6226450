-- Revenue per day over the orders that are not cancelled; the average is rounded half-up to
-- cents. Same figures as the Spark gold table gold/daily_revenue.
--
-- Incremental: a run merges (Delta MERGE on date_day) only the days holding orders loaded into
-- silver since the previous run - new days, and older days whose orders changed since (a
-- pending order cancelled later). silver_loaded_at, the newest silver load among a day's
-- orders of any status, is the watermark.
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        file_format='delta',
        unique_key='date_day',
        partition_by=['date_day'],
        on_schema_change='fail'
    )
}}

with

{% if is_incremental() %}
changed_days as (

    -- Read from the source: stg_orders leaves cancelled orders out, and a cancellation is a change.
    {{ changed_dates(source('silver', 'orders'), 'order_date') }}

),
{% endif %}

order_loads as (

    select
        order_date as date_day,
        max(_ingested_at) as silver_loaded_at
    from {{ source('silver', 'orders') }}
    {% if is_incremental() %}
    where order_date in (select changed_date from changed_days)
    {% endif %}
    group by order_date

),

orders as (

    select
        order_id,
        user_id,
        order_amount,
        order_date
    from {{ ref('stg_orders') }}
    {% if is_incremental() %}
    where order_date in (select changed_date from changed_days)
    {% endif %}

),

daily as (

    select
        order_date as date_day,
        count(distinct order_id) as total_orders,
        count(distinct user_id) as unique_customers,
        cast(sum(order_amount) as decimal(20, 2)) as total_revenue,
        cast(round(avg(order_amount), 2) as decimal(12, 2)) as avg_order_value
    from orders
    group by order_date

)

select
    daily.date_day,
    daily.total_orders,
    daily.unique_customers,
    daily.total_revenue,
    daily.avg_order_value,
    order_loads.silver_loaded_at
from daily
inner join order_loads
    on daily.date_day = order_loads.date_day
