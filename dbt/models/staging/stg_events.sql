-- Events with an hour bucket; amount only on purchases (null elsewhere).
with

source as (

    select
        event_id,
        user_id,
        event_type,
        amount,
        event_time,
        event_date,
        _ingested_at
    from {{ source('silver', 'events') }}

),

renamed as (

    select
        event_id,
        user_id,
        event_type,
        cast(amount as decimal(10, 2)) as event_amount,
        cast(event_time as timestamp) as event_at,
        date_trunc('hour', event_time) as event_hour,
        event_date,
        _ingested_at as ingested_at
    from source

)

select
    event_id,
    user_id,
    event_type,
    event_amount,
    event_at,
    event_hour,
    event_date,
    ingested_at
from renamed
