"""The transform service: `dbt build` of dbt_project/ into the marts (`tickhouse transform`).

`transform.dbt_runner` runs dbt in-process, the way the `transform_marts` DAG does through Cosmos;
`transform.cli` is the command.
"""
