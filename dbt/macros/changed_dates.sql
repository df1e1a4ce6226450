{#-
    The dates an incremental mart has to recompute: the `date_column` values of the rows of
    `relation` loaded into silver (`loaded_at_column`, silver's _ingested_at lineage) after the
    newest load the mart has already seen (`watermark_column` of {{ this }}).

    New dates qualify, and so do older dates whose rows changed later (an order cancelled a
    day after it was placed, an event landing a day late); dates nothing new touched do not.
-#}
{% macro changed_dates(relation, date_column, loaded_at_column='_ingested_at', watermark_column='silver_loaded_at') %}
    select distinct {{ date_column }} as changed_date
    from {{ relation }}
    where {{ loaded_at_column }} > (
        select coalesce(max({{ watermark_column }}), cast('1970-01-01 00:00:00' as timestamp))
        from {{ this }}
    )
{% endmacro %}
