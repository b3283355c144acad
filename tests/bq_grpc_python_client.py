"""Google's official clients against the BigQuery test server: google-cloud-bigquery-storage's
`BigQueryWriteClient` and `AppendRowsStream` append rows over gRPC (the `_default` stream, a
COMMITTED stream with offsets, a PENDING stream committed with BatchCommitWriteStreams), and
google-cloud-bigquery's `list_rows` reads them back through the REST server, every BigQuery type
included. Run by tests/tests/bq_grpc_python_client.rs with the REST base URL
(http://127.0.0.1:PORT) and the gRPC address (127.0.0.1:PORT) of a server holding table p.d.t
with the schema that test creates (a column per field of `row_descriptor`). Prints one JSON object
of what it saw.

No protoc: the row message is built from a DescriptorProto by hand, as a writer that generates
its schema at run time does."""

import base64
import json
import sys

import grpc
from google.api_core.client_options import ClientOptions
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types, writer
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
TABLE = "projects/p/datasets/d/tables/t"


def row_descriptor() -> descriptor_pb2.DescriptorProto:
    """Row, with nested Rec and Rec.Item, fully qualified with a package as protoc writes them."""
    item = descriptor_pb2.DescriptorProto(name="Item")
    item.field.add(name="s", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    item.field.add(name="v", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    rec = descriptor_pb2.DescriptorProto(name="Rec")
    rec.nested_type.append(item)
    rec.field.add(name="x", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    rec.field.add(name="items", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                  type_name=".evlogtest.Row.Rec.Item")
    row = descriptor_pb2.DescriptorProto(name="Row")
    row.nested_type.append(rec)
    fields = [
        ("id", F.TYPE_INT64, F.LABEL_OPTIONAL),
        ("name", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("ts", F.TYPE_INT64, F.LABEL_OPTIONAL),
        ("ts_text", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("day", F.TYPE_INT32, F.LABEL_OPTIONAL),
        ("dt", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("tm", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("num", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("bignum", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("js", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("geo", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("iv", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("raw", F.TYPE_BYTES, F.LABEL_OPTIONAL),
        ("f", F.TYPE_DOUBLE, F.LABEL_OPTIONAL),
        ("ok", F.TYPE_BOOL, F.LABEL_OPTIONAL),
        ("tags", F.TYPE_STRING, F.LABEL_REPEATED),
        ("nums", F.TYPE_INT64, F.LABEL_REPEATED),
    ]
    for i, (name, ty, label) in enumerate(fields, start=1):
        row.field.add(name=name, number=i, type=ty, label=label)
    row.field.add(name="rec", number=len(fields) + 1, type=F.TYPE_MESSAGE,
                  label=F.LABEL_OPTIONAL, type_name=".evlogtest.Row.Rec")
    return row


def row_class(desc: descriptor_pb2.DescriptorProto):
    file = descriptor_pb2.FileDescriptorProto(name="evlogtest_row.proto", package="evlogtest",
                                              syntax="proto2")
    file.message_type.append(desc)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("evlogtest.Row"))


def make_row(cls, i: int, **over):
    r = cls(
        id=i,
        name=f"row {i}",
        ts=1_796_205_600_123_456 + i,
        ts_text="2026-12-03 10:00:00.5+01:00",
        day=20_425,
        dt="2026-12-03T11:22:33.123456",
        tm="11:22:33.5",
        num="123.456",
        bignum="-98765432109876543210.0123456789",
        js='{"k": [1, "two"]}',
        geo="POINT(1 2)",
        iv="1-2 3 4:5:6.5",
        raw=b"\x00\xffevlog",
        f=2.5,
        ok=True,
        tags=["a", "b"],
        nums=[1, -2],
    )
    r.rec.x = 7
    item = r.rec.items.add()
    item.s = "i1"
    item.v = 0.25
    for k, v in over.items():
        setattr(r, k, v)
    return r


def template(stream: str, desc) -> types.AppendRowsRequest:
    req = types.AppendRowsRequest()
    req.write_stream = stream
    data = types.AppendRowsRequest.ProtoData()
    data.writer_schema = types.ProtoSchema(proto_descriptor=desc)
    req.proto_rows = data
    return req


def rows_request(rows, offset=None) -> types.AppendRowsRequest:
    req = types.AppendRowsRequest()
    data = types.AppendRowsRequest.ProtoData()
    data.rows = types.ProtoRows(serialized_rows=[r.SerializeToString() for r in rows])
    req.proto_rows = data
    if offset is not None:
        req.offset = offset
    return req


def cell(v):
    """A list_rows value as JSON: its Python type and text."""
    if isinstance(v, dict):
        return {k: cell(x) for k, x in v.items()}
    if isinstance(v, list):
        return [cell(x) for x in v]
    if isinstance(v, bytes):
        return ["bytes", base64.b64encode(v).decode()]
    if v is None:
        return None
    return [type(v).__name__, v.isoformat() if hasattr(v, "isoformat") else str(v)]


def main(base_url: str, grpc_addr: str) -> None:
    channel = grpc.insecure_channel(grpc_addr)
    client = BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
    desc = row_descriptor()
    Row = row_class(desc)
    seen = {}

    # The default stream: at-least-once, no offsets.
    s = writer.AppendRowsStream(client, template(f"{TABLE}/streams/_default", desc))
    s.send(rows_request([make_row(Row, 1), make_row(Row, 2)])).result(timeout=10)
    # An invalid row (NUMERIC "abc"): the whole request refused, row_errors name the field.
    try:
        s.send(rows_request([make_row(Row, 3), make_row(Row, 4, num="abc")])).result(timeout=10)
        seen["row_error"] = None
    except exceptions.GoogleAPICallError as e:
        seen["row_error"] = {
            "code": e.grpc_status_code.name if e.grpc_status_code else str(e.code),
            "row_errors": [
                {"index": r.index, "code": r.code.name, "message": r.message}
                for r in e.response.row_errors
            ],
        }
    s.close()

    # A COMMITTED stream with offsets.
    ws = client.create_write_stream(parent=TABLE, write_stream=types.WriteStream(
        type_=types.WriteStream.Type.COMMITTED))
    s = writer.AppendRowsStream(client, template(ws.name, desc))
    offsets = [
        s.send(rows_request([make_row(Row, 10), make_row(Row, 11)], offset=0)).result(timeout=10)
        .append_result.offset,
        s.send(rows_request([make_row(Row, 12)], offset=2)).result(timeout=10)
        .append_result.offset,
    ]
    try:
        s.send(rows_request([make_row(Row, 10)], offset=0)).result(timeout=10)
        seen["repeated_offset"] = None
    except exceptions.AlreadyExists as e:
        seen["repeated_offset"] = ["AlreadyExists", e.message]
    s.close()
    seen["committed_offsets"] = offsets
    seen["committed_row_count"] = client.finalize_write_stream(name=ws.name).row_count

    # A PENDING stream: invisible until BatchCommitWriteStreams.
    bq = bigquery.Client(project="p", credentials=AnonymousCredentials(),
                         client_options=ClientOptions(api_endpoint=base_url))
    ps = client.create_write_stream(parent=TABLE, write_stream=types.WriteStream(
        type_=types.WriteStream.Type.PENDING))
    s = writer.AppendRowsStream(client, template(ps.name, desc))
    s.send(rows_request([make_row(Row, 20), make_row(Row, 21)], offset=0)).result(timeout=10)
    s.close()
    client.finalize_write_stream(name=ps.name)
    seen["before_commit"] = sorted(r["id"] for r in bq.list_rows("p.d.t"))
    commit = client.batch_commit_write_streams(
        types.BatchCommitWriteStreamsRequest(parent=TABLE, write_streams=[ps.name]))
    seen["commit_errors"] = [e.error_message for e in commit.stream_errors]
    seen["committed_at"] = commit.commit_time is not None

    rows = list(bq.list_rows("p.d.t"))
    seen["ids"] = [r["id"] for r in rows]
    seen["first"] = {k: cell(v) for k, v in rows[0].items()}
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
