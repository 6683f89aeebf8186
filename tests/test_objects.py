"""The S3 module against moto's server: sizes, inclusive byte ranges, and errors turned into ours."""

import pytest

from chalicelib import errors, objects
from chalicelib.objects import ObjectStore
from local import services


def test_size_and_inclusive_ranges_read_what_was_put(rt, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")

    assert rt.objects.size(bucket, "k") == 10
    assert rt.objects.read_range(bucket, "k", 0, 0) == b"0"
    assert rt.objects.read_range(bucket, "k", 3, 6) == b"3456"
    assert rt.objects.read_range(bucket, "k", 8, 9) == b"89"


@pytest.mark.parametrize(
    "read",
    [lambda store, b: store.size(b, "nope.csv"), lambda store, b: store.read_range(b, "nope.csv", 0, 9)],
    ids=["size", "range"],
)
def test_a_missing_key_is_object_not_found_naming_it(rt, bucket, read):
    with pytest.raises(errors.ObjectNotFound, match=f"s3://{bucket}/nope.csv does not exist"):
        read(rt.objects, bucket)


@pytest.mark.parametrize(
    "read",
    [
        lambda store: store.size("no-such-bucket-here", "k"),
        lambda store: store.read_range("no-such-bucket-here", "k", 0, 9),
    ],
    ids=["size", "range"],
)
def test_a_missing_bucket_is_object_not_found(rt, read):
    with pytest.raises(errors.ObjectNotFound, match="s3://no-such-bucket-here/k"):
        read(rt.objects)


def test_an_unreachable_endpoint_is_object_store_unavailable():
    nowhere = f"http://127.0.0.1:{services.free_port()}"
    store = ObjectStore(lambda: objects.connect(endpoint_url=nowhere, region="us-east-1"))

    with pytest.raises(errors.ObjectStoreUnavailable) as failure:
        store.size("bucket", "k")

    assert isinstance(failure.value, errors.DependencyUnavailable)
