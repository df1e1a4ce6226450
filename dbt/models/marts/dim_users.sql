-- One row per user (current state, SCD1) with their order history over the orders that are
-- not cancelled.
with

users as (

    select
        user_id,
        email,
        country,
        updated_at
    from {{ ref('stg_users') }}

),

order_stats as (

    select
        user_id,
        count(distinct order_id) as total_orders,
        cast(sum(order_amount) as decimal(20, 2)) as lifetime_revenue,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at
    from {{ ref('stg_orders') }}
    group by user_id

)

select
    users.user_id,
    users.email,
    users.country,
    users.updated_at,
    coalesce(order_stats.total_orders, 0) as total_orders,
    coalesce(order_stats.lifetime_revenue, cast(0 as decimal(20, 2))) as lifetime_revenue,
    order_stats.first_ordered_at,
    order_stats.last_ordered_at
from users
left join order_stats
    on users.user_id = order_stats.user_id
