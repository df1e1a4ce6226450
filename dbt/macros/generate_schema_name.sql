{#- Models go to the schema they declare (staging, gold) as is, not <target schema>_<schema>:
    the schemas are the lakehouse's layers, the same for every target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
