"""A first end-to-end pass over the store: ingest digits, read back, verify."""

import numpy as np
from sklearn.datasets import load_digits

from lineage.data.datasets import read_rows
from lineage.data.ingest import ingest_digits
from lineage.store.verify import verify_store


def test_ingest_digits_reads_back_exactly(store):
    info = ingest_digits(store)
    X, y = load_digits(return_X_y=True)
    ids, got_X, got_y = read_rows(store, info.row_ids)
    np.testing.assert_array_equal(ids, np.arange(1, 1798))
    np.testing.assert_array_equal(got_X, X.astype(np.uint8))
    np.testing.assert_array_equal(got_y, y)
    report = verify_store(store)
    assert report.events == 2  # source.add (auto-registered) + ingest


def test_cli_tour(cli):
    assert cli("ingest", "digits").exit_code == 0
    result = cli("verify")
    assert result.exit_code == 0, result.output
    assert "OK: 2 events" in result.output
