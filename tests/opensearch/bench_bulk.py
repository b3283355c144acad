"""opensearch-py's side of tests/bench/opensearch.sh: the same documents through helpers.bulk.

    python tests/opensearch/bench_bulk.py URL FILE INDEX

FILE holds one {"id", "doc"} per line (os_bench gen). The documents are loaded first; the clock
runs around helpers.bulk only (create actions, chunks of 500, as the sink sends them). Checks that
every document was created, prints "events_per_s N cpu_us_per_event C" (C: this process's CPU
time, time.process_time()).
"""

import json
import sys
import time

from opensearchpy import OpenSearch, helpers


def main() -> int:
    url, path, index = sys.argv[1:4]
    with open(path) as f:
        docs = [json.loads(line) for line in f]
    actions = [
        {"_op_type": "create", "_index": index, "_id": d["id"], "_source": d["doc"]} for d in docs
    ]
    client = OpenSearch(hosts=[url], timeout=60)
    start, cpu0 = time.perf_counter(), time.process_time()
    ok, errors = helpers.bulk(client, actions, chunk_size=500, raise_on_error=False)
    secs, cpu = time.perf_counter() - start, time.process_time() - cpu0
    if ok != len(docs) or errors:
        print(f"helpers.bulk created {ok} of {len(docs)}: {errors[:3]}", file=sys.stderr)
        return 1
    print(f"events_per_s {len(docs) / secs:.0f} cpu_us_per_event {cpu * 1e6 / len(docs):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
