-- A test that always fails: enabled only with --vars '{enable_failing_test: true}' to show that
-- a failing dbt test fails the Prefect flow and that the error names the test.
select date_day, total_orders
from {{ ref('fct_daily_revenue') }}
where total_orders >= 0
