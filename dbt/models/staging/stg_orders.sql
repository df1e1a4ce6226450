-- Orders that earn revenue: cancelled orders are left out; amount as decimal(10,2),
-- created_at as the timestamp ordered_at.
with

source as (

    select
        order_id,
        user_id,
        amount,
        status,
        created_at,
        updated_at,
        order_date,
        _ingested_at
    from {{ source('silver', 'orders') }}

),

renamed as (

    select
        order_id,
        user_id,
        cast(amount as decimal(10, 2)) as order_amount,
        status,
        cast(created_at as timestamp) as ordered_at,
        order_date,
        cast(updated_at as timestamp) as updated_at,
        _ingested_at as ingested_at
    from source
    where status != 'cancelled'

)

select
    order_id,
    user_id,
    order_amount,
    status,
    ordered_at,
    order_date,
    updated_at,
    ingested_at
from renamed
