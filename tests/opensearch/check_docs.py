"""Checks documents in OpenSearch with the official client (opensearch-py), for the OpenSearch
sink's tests (tests/tests/opensearch_sink.rs).

    python tests/opensearch/check_docs.py URL SPEC_JSON

SPEC_JSON is a list of checks, each with an "index" (a name or pattern) and one of:
  {"ids": [...]}                       every id is there (mget), and no other document
                                       (unless "only": false)
  {"id": "...", "source": {...}}       the document's _source holds these members
  {"term": {"field": "value"}, "hits": N, "ids": [...]}
                                       a term query matches N documents (these ids)
  {"count": N}                         the index holds N documents
Prints one "ok - ..." or "not ok - ..." line per check; exits 1 when one failed.
"""

import json
import sys

from opensearchpy import OpenSearch


def main() -> int:
    url, spec = sys.argv[1], json.loads(sys.argv[2])
    client = OpenSearch(hosts=[url], timeout=30)
    failed = 0

    def report(ok: bool, what: str) -> None:
        nonlocal failed
        print(("ok - " if ok else "not ok - ") + what)
        failed += 0 if ok else 1

    client.indices.refresh(index="_all")
    for check in spec:
        index = check["index"]
        if "ids" in check and "term" not in check:
            ids = check["ids"]
            found = []
            for start in range(0, len(ids), 500):
                r = client.mget(index=index, body={"ids": ids[start : start + 500]})
                found += [d["_id"] for d in r["docs"] if d.get("found")]
            missing = sorted(set(ids) - set(found))
            report(not missing, f"{index}: {len(ids)} ids found by id (missing {missing[:5]})")
            if check.get("only", True):
                n = client.count(index=index)["count"]
                report(n == len(ids), f"{index}: holds exactly {len(ids)} documents (holds {n})")
        elif "source" in check:
            doc = client.get(index=index, id=check["id"])
            src = doc["_source"]
            bad = {k: src.get(k) for k, v in check["source"].items() if src.get(k) != v}
            report(not bad, f"{index}/{check['id']}: _source holds {check['source']} (differs: {bad})")
        elif "term" in check:
            body = {"query": {"term": check["term"]}, "size": 100, "track_total_hits": True}
            r = client.search(index=index, body=body)
            total = r["hits"]["total"]["value"]
            hits = [h["_id"] for h in r["hits"]["hits"]]
            ok = total == check["hits"] and (
                "ids" not in check or sorted(hits) == sorted(check["ids"])
            )
            report(ok, f"{index}: term {check['term']} finds {check['hits']} (found {total}: {hits[:5]})")
        elif "count" in check:
            n = client.count(index=index)["count"]
            report(n == check["count"], f"{index}: count {check['count']} (got {n})")
        else:
            report(False, f"unknown check {check}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
