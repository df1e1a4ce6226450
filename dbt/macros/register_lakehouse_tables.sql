{#-
    Keep the catalog in step with the storage root (run as on-run-start, and by
    `dbt run-operation register_lakehouse_tables`).

    - every schema the project uses exists (under DBT_LAKEHOUSE_CATALOG_DIR when set: the
      schemas' own directories stay empty, every table has an explicit location);
    - every source table is registered as an external Delta table at
      <warehouse>/<source schema>/<table> (CREATE TABLE IF NOT EXISTS ... LOCATION); one already
      registered elsewhere (the storage root moved) is pointed at the right place;
    - a mart registered at another location than <location_root>/<model>, or whose Delta table
      is gone (DBT_LAKEHOUSE_DELTA_TABLES, listed for local roots), is dropped from the catalog
      (external table: no file is touched), so dbt builds it afresh where it belongs instead of
      merging into another root's table or a table that no longer exists;
    - a mart that is not in the catalog but whose Delta table is listed at its location is
      registered there, so an incremental model carries on from it. (The warm target's catalog
      is in memory: after the server stops, it starts empty and is filled from the storage here.)

    The warehouse comes from DBT_LAKEHOUSE_WAREHOUSE (set by lakehouse/dbt.py).

    With DBT_LAKEHOUSE_CATALOG_IN_STEP=1 the hook does nothing: the dbt_build flow sets it for
    its build when the `dbt source freshness` just before it ran this hook over the same project
    and storage (about 1.3 s of catalog queries on the warm Spark, saved once per build).
-#}
{% macro register_lakehouse_tables() %}
    {% if execute and env_var('DBT_LAKEHOUSE_CATALOG_IN_STEP', '') != '1' %}
        {% set warehouse = env_var('DBT_LAKEHOUSE_WAREHOUSE').rstrip('/') %}
        {% set catalog_dir = env_var('DBT_LAKEHOUSE_CATALOG_DIR', '').rstrip('/') %}
        {% set listed = env_var('DBT_LAKEHOUSE_DELTA_TABLES', '') %}
        {% set delta_tables = fromjson(listed) if listed else none %}

        {% set schemas = [] %}
        {% for node in graph.sources.values() %}
            {% do schemas.append(node.schema) if node.schema not in schemas %}
        {% endfor %}
        {% for node in graph.nodes.values() if node.resource_type == 'model' %}
            {% do schemas.append(node.schema) if node.schema not in schemas %}
        {% endfor %}
        {% for schema in schemas %}
            {% set location = " location '" ~ catalog_dir ~ "/" ~ schema ~ ".db'" if catalog_dir else '' %}
            {% do run_query('create schema if not exists ' ~ schema ~ location) %}
        {% endfor %}

        {% for node in graph.sources.values() %}
            {% set location = lakehouse_location(warehouse ~ '/' ~ node.schema ~ '/' ~ node.identifier) %}
            {% do lakehouse_register_external(node.schema, node.identifier, location) %}
        {% endfor %}

        {% for node in graph.nodes.values() if node.resource_type == 'model' and node.config.get('location_root') %}
            {% set name = node.schema ~ '.' ~ node.alias %}
            {% set location = lakehouse_location(node.config.location_root ~ '/' ~ node.alias) %}
            {% set listed_path = node.config.location_root.rstrip('/').split('/')[-1] ~ '/' ~ node.alias %}
            {#- dbt listed the catalog into its relation cache before this hook: every change
                made here goes into that cache too, or a materialization would decide on the
                catalog as it was (e.g. rebuild a registered incremental mart from scratch) -#}
            {% set relation = api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias, type='table') %}
            {% if not lakehouse_is_registered(node.schema, node.alias) %}
                {% if delta_tables is not none and listed_path in delta_tables %}
                    {% do lakehouse_register_external(node.schema, node.alias, location) %}
                    {% do adapter.cache_added(relation) %}
                {% endif %}
            {% elif delta_tables is not none and listed_path not in delta_tables %}
                {{ log('catalog: ' ~ name ~ ' has no Delta table at ' ~ location ~ ' any more; dropping the catalog entry', info=true) }}
                {% do run_query('drop table if exists ' ~ name) %}
                {% do adapter.cache_dropped(relation) %}
            {% else %}
                {% set registered = lakehouse_registered_location(node.schema, node.alias) %}
                {% if registered != location %}
                    {{ log('catalog: ' ~ name ~ ' is registered at ' ~ registered ~ ', expected ' ~ location ~ '; dropping the catalog entry (files kept)', info=true) }}
                    {% do run_query('drop table if exists ' ~ name) %}
                    {% do adapter.cache_dropped(relation) %}
                {% endif %}
            {% endif %}
        {% endfor %}
    {% endif %}
{% endmacro %}


{#- A location as the catalog reports it: scheme-qualified (file:/... for local paths). -#}
{% macro lakehouse_location(path) %}
    {%- set path = path | trim -%}
    {%- if ':' in path.split('/')[0] -%}
        {{- return(path.rstrip('/')) -}}
    {%- else -%}
        {{- return('file:' ~ path.rstrip('/')) -}}
    {%- endif -%}
{% endmacro %}


{#- Whether `schema.name` is in the catalog. -#}
{% macro lakehouse_is_registered(schema, name) %}
    {% set found = run_query("show tables in " ~ schema ~ " like '" ~ name ~ "'") %}
    {{ return(found.rows | length > 0) }}
{% endmacro %}


{#- The location `schema.name` is registered at, or none when it is not in the catalog. -#}
{% macro lakehouse_registered_location(schema, name) %}
    {% if not lakehouse_is_registered(schema, name) %}
        {{ return(none) }}
    {% endif %}
    {% set detail = run_query('describe detail ' ~ schema ~ '.' ~ name) %}
    {{ return(lakehouse_location(detail.columns['location'].values()[0])) }}
{% endmacro %}


{#- Register the Delta table at `location` as `schema.name` (external), or re-point it. -#}
{% macro lakehouse_register_external(schema, name, location) %}
    {% set registered = lakehouse_registered_location(schema, name) %}
    {% if registered is none %}
        {{ log('catalog: registering ' ~ schema ~ '.' ~ name ~ ' at ' ~ location, info=true) }}
        {% do run_query('create table if not exists ' ~ schema ~ '.' ~ name ~ " using delta location '" ~ location ~ "'") %}
    {% elif registered != location %}
        {{ log('catalog: ' ~ schema ~ '.' ~ name ~ ' moves from ' ~ registered ~ ' to ' ~ location, info=true) }}
        {% do run_query('alter table ' ~ schema ~ '.' ~ name ~ " set location '" ~ location ~ "'") %}
    {% endif %}
{% endmacro %}
