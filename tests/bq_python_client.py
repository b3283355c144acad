"""Google's official BigQuery Python client (google-cloud-bigquery) against the BigQuery test
server: `update_table(table, ["schema"])` (tables.patch) adds a column, a type change is refused
with BadRequest, and while the change propagates `insert_rows_json` reports the row's
"no such field" error the way the client parses BigQuery's. Run by tests/tests/bq_python_client.rs
with the server's base URL (http://127.0.0.1:PORT) and a table p.d.t = (a STRING REQUIRED).
Prints one JSON line of what it saw."""

import json
import sys

from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import BadRequest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


def main(base_url: str) -> None:
    client = bigquery.Client(
        project="p",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=base_url),
    )
    table = client.get_table("p.d.t")
    table.schema = list(table.schema) + [bigquery.SchemaField("coupon", "STRING", mode="NULLABLE")]
    table = client.update_table(table, ["schema"])
    columns = [(f.name, f.field_type, f.mode) for f in table.schema]

    refused = None
    bad = list(table.schema)
    bad[0] = bigquery.SchemaField(bad[0].name, "INTEGER", mode=bad[0].mode)
    table.schema = bad
    try:
        client.update_table(table, ["schema"])
    except BadRequest as e:
        refused = e.message

    row_errors = client.insert_rows_json("p.d.t", [{"a": "x", "coupon": "XMAS"}])
    seen = [(f.name, f.field_type, f.mode) for f in client.get_table("p.d.t").schema]
    print(json.dumps({"columns": columns, "refused": refused, "row_errors": row_errors, "get": seen}))


if __name__ == "__main__":
    main(sys.argv[1])
