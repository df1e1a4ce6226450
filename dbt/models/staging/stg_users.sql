-- Current state of every user (silver keeps the latest row per user).
with

source as (

    select
        user_id,
        email,
        country,
        updated_at,
        _ingested_at
    from {{ source('silver', 'users') }}

),

renamed as (

    select
        user_id,
        email,
        country,
        cast(updated_at as timestamp) as updated_at,
        _ingested_at as ingested_at
    from source

)

select
    user_id,
    email,
    country,
    updated_at,
    ingested_at
from renamed
