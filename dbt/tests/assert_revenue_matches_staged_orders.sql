-- Every day of fct_daily_revenue adds up to the orders stg_orders holds for it (no day stale
-- after an incremental run, no day missing). Returns the days that disagree.
with staged as (

    select
        order_date as date_day,
        count(*) as total_orders,
        cast(sum(order_amount) as decimal(20, 2)) as total_revenue
    from {{ ref('stg_orders') }}
    group by order_date

)

select
    coalesce(staged.date_day, mart.date_day) as date_day,
    staged.total_orders as staged_orders,
    mart.total_orders as mart_orders,
    staged.total_revenue as staged_revenue,
    mart.total_revenue as mart_revenue
from staged
full outer join {{ ref('fct_daily_revenue') }} as mart
    on staged.date_day = mart.date_day
where staged.date_day is null
    or mart.date_day is null
    or staged.total_orders != mart.total_orders
    or staged.total_revenue != mart.total_revenue
