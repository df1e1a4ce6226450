-- Revenue per day and the country the customer had when they ordered: each order (not
-- cancelled) takes the version of its user in silver.users_history (SCD2) that was valid at
-- ordered_at. An order placed before its user's first known version takes that first
-- version (the earliest country known); one whose user has no history counts as 'unknown'.
--
-- The Spark table gold/daily_revenue_by_country, by contrast, uses each user's current
-- country (SCD1). A table, rebuilt on every run: a late (out-of-order) user version can move
-- an order of any earlier day to another country.
with

orders as (

    select
        order_id,
        user_id,
        order_amount,
        ordered_at
    from {{ ref('stg_orders') }}

),

versions as (

    select
        user_id,
        country,
        valid_from,
        valid_to,
        row_number() over (partition by user_id order by valid_from) = 1 as is_first
    from {{ source('silver', 'users_history') }}

),

attributed as (

    select
        cast(orders.ordered_at as date) as date_day,
        coalesce(versions.country, 'unknown') as country,
        orders.order_id,
        orders.order_amount
    from orders
    left join versions
        on orders.user_id = versions.user_id
        and (versions.is_first or orders.ordered_at >= versions.valid_from)
        and (versions.valid_to is null or orders.ordered_at < versions.valid_to)

)

select
    date_day,
    country,
    count(distinct order_id) as total_orders,
    cast(sum(order_amount) as decimal(20, 2)) as total_revenue
from attributed
group by date_day, country
