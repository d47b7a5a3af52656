"""Garbage collection and deduplication across restores.

The store deletes an object once no block references it and no durable
checkpoint needs it; a later identical block must then be uploaded again,
even when a restored checkpoint still lists the deleted object.
"""

import os

import mfhelpers as h
from mfhelpers import MIB, read_file, write_file


def test_dedup_never_reuses_a_collected_object(mounts):
    m = mounts(opts={"writeback_delay": "0.1"})
    data = h.rand_bytes(77, 3 * MIB)
    write_file(m.path("a"), data)
    m.umount()
    objects_with_a = m.data_objects()
    assert len(objects_with_a) >= 3
    # delete it: the unmount collects its objects, but the checkpoint
    # written just before still lists them (with no reference)
    m.mount()
    os.unlink(m.path("a"))
    m.umount()
    assert len(m.data_objects()) == len(objects_with_a) - 3
    # restore from that checkpoint, then write the same bytes again
    m.wipe_cache()
    m.mount()
    write_file(m.path("b"), data)
    m.remount(wipe_cache=True)
    assert read_file(m.path("b")) == data
    assert len(m.data_objects()) == len(objects_with_a)
