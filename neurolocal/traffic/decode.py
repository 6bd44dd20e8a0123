"""A compiled msgpack decoder for traffic records: bytes in, column arrays out.

`msgpack.Unpacker` builds a Python list per record and a Python str per name;
turning 10 million of those into columns costs ~2.5 us a record. A record is an
array of scalars (ints, floats, strings), so `decode_records` walks the bytes
itself and writes, per record and field, a type tag and a 64-bit value: the
integer, the float's IEEE bits, or the string's id in an interned string table
shared by every field (names repeat: vertices, kinds, hosts, actors). Anything
that is not such a record (the header, energy maps, a damaged object) stops the
walk at its first byte and is handed to the Python msgpack decoder, so the fast
path never has to be right about the unusual case, only about the usual one.

The string table is open addressing on a 64-bit FNV-1a hash; a hit compares the
bytes, so two names never share an id (no reliance on the hash being unique).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# type tags written per field
NIL, INT, FLOAT, STR, BOOL = 0, 1, 2, 3, 4
# why a call stopped
END, NEED_MORE, OTHER, FULL, TABLE_FULL, CORRUPT = 0, 1, 2, 3, 4, 5

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True, inline="always")
def _be(buf, p, n):
    """Big-endian unsigned integer of n bytes at p."""
    v = np.uint64(0)
    for k in range(n):
        v = (v << np.uint64(8)) | np.uint64(buf[p + k])
    return v


@njit(cache=True, nogil=True, inline="always")
def _intern(buf, a, length, table_hash, table_id, store, str_off, str_len, counts):
    """Id of the string buf[a:a+length]; -1 when the table or store is full."""
    h = np.uint64(0xCBF29CE484222325)
    for k in range(length):
        h = (h ^ np.uint64(buf[a + k])) * np.uint64(0x100000001B3)
    mask = table_id.size - 1
    slot = np.int64(h & np.uint64(mask))
    while True:
        sid = table_id[slot]
        if sid < 0:
            break
        if table_hash[slot] == h and str_len[sid] == length:
            o = str_off[sid]
            same = True
            for k in range(length):
                if store[o + k] != buf[a + k]:
                    same = False
                    break
            if same:
                return sid
        slot = (slot + 1) & mask
    n, used = counts[0], counts[1]
    if 2 * (n + 1) > table_id.size or n + 1 > str_off.size or used + length > store.size:
        return -1
    for k in range(length):
        store[used + k] = buf[a + k]
    str_off[n] = used
    str_len[n] = length
    table_hash[slot] = h
    table_id[slot] = n
    counts[0] = n + 1
    counts[1] = used + length
    return n


@njit(cache=True, nogil=True)
def decode_records(buf, pos, end, nfields, tags, vals, max_string,
                   table_hash, table_id, store, str_off, str_len, counts):
    """Decode records from buf[pos:end] into tags/vals (rows x nfields).

    Returns (records decoded, position after the last whole record, status), where
    status says why it stopped: END (all bytes used), NEED_MORE (a record runs past
    `end`), OTHER (the next object is not an array of `nfields` scalars), FULL (no
    rows left), TABLE_FULL (grow the string table and call again), CORRUPT (a byte
    msgpack never uses, or a string longer than `max_string`).
    """
    rows = tags.shape[0]
    n = 0
    scratch32 = np.zeros(1, np.uint32)
    scratch64 = np.zeros(1, np.float64)
    last = np.full(nfields, -1, np.int64)
    while True:
        if pos >= end:
            return n, pos, END
        if n >= rows:
            return n, pos, FULL
        start = pos
        b = np.int64(buf[pos])
        if 0x90 <= b <= 0x9F:
            count = b & 0x0F
            p = pos + 1
        elif b == 0xDC:
            if pos + 3 > end:
                return n, start, NEED_MORE
            count = np.int64(_be(buf, pos + 1, 2))
            p = pos + 3
        elif b == 0xDD:
            if pos + 5 > end:
                return n, start, NEED_MORE
            count = np.int64(_be(buf, pos + 1, 4))
            p = pos + 5
        else:
            return n, start, OTHER
        if count != nfields:
            return n, start, OTHER
        for f in range(nfields):
            if p >= end:
                return n, start, NEED_MORE
            c = np.int64(buf[p])
            tag = INT
            val = np.int64(0)
            if c <= 0x7F:
                val = c
                p += 1
            elif c >= 0xE0:
                val = c - 256
                p += 1
            elif 0xA0 <= c <= 0xBF or 0xD9 <= c <= 0xDB:
                if c <= 0xBF:
                    length = c & 0x1F
                    p += 1
                else:
                    width = 1 if c == 0xD9 else (2 if c == 0xDA else 4)
                    if p + 1 + width > end:
                        return n, start, NEED_MORE
                    length = np.int64(_be(buf, p + 1, width))
                    p += 1 + width
                if length > max_string:
                    return n, start, CORRUPT
                if p + length > end:
                    return n, start, NEED_MORE
                sid = last[f]  # names repeat field by field: try the previous record's first
                same = sid >= 0 and str_len[sid] == length
                if same:
                    o = str_off[sid]
                    for k in range(length):
                        if store[o + k] != buf[p + k]:
                            same = False
                            break
                if not same:
                    sid = _intern(buf, p, length, table_hash, table_id, store, str_off,
                                  str_len, counts)
                    last[f] = sid
                if sid < 0:
                    return n, start, TABLE_FULL
                tag = STR
                val = np.int64(sid)
                p += length
            elif 0xCC <= c <= 0xD3:
                width = 1 << ((c - 0xCC) & 3)
                if p + 1 + width > end:
                    return n, start, NEED_MORE
                raw = _be(buf, p + 1, width)
                if c <= 0xCF:  # unsigned
                    if c == 0xCF and raw > np.uint64(0x7FFFFFFFFFFFFFFF):
                        return n, start, OTHER  # beyond int64: the slow path says so
                    val = np.int64(raw)
                else:  # signed: sign-extend from `width` bytes
                    bits = 8 * width
                    if bits == 64:
                        val = np.int64(raw)  # wraps to the two's-complement value
                    else:
                        v = np.int64(raw)
                        if v >= (np.int64(1) << (bits - 1)):
                            v -= np.int64(1) << bits
                        val = v
                p += 1 + width
            elif c == 0xCA:
                if p + 5 > end:
                    return n, start, NEED_MORE
                scratch32[0] = np.uint32(_be(buf, p + 1, 4))
                scratch64[0] = np.float64(scratch32.view(np.float32)[0])
                val = scratch64.view(np.int64)[0]
                tag = FLOAT
                p += 5
            elif c == 0xCB:
                if p + 9 > end:
                    return n, start, NEED_MORE
                val = np.int64(_be(buf, p + 1, 8))
                tag = FLOAT
                p += 9
            elif c == 0xC0:
                tag = NIL
                p += 1
            elif c == 0xC2 or c == 0xC3:
                tag = BOOL
                val = c - 0xC2
                p += 1
            elif c == 0xC1:
                return n, start, CORRUPT
            else:  # nested array/map, bin, ext: not a record of scalars
                return n, start, OTHER
            tags[n, f] = tag
            vals[n, f] = val
        n += 1
        pos = p


@njit(cache=True, nogil=True)
def rehash(str_off, str_len, store, n, table_hash, table_id):
    """Insert the first n stored strings into an empty (larger) table."""
    mask = table_id.size - 1
    for sid in range(n):
        h = np.uint64(0xCBF29CE484222325)
        o = str_off[sid]
        for k in range(str_len[sid]):
            h = (h ^ np.uint64(store[o + k])) * np.uint64(0x100000001B3)
        slot = np.int64(h & np.uint64(mask))
        while table_id[slot] >= 0:
            slot = (slot + 1) & mask
        table_hash[slot] = h
        table_id[slot] = sid


class StringTable:
    """The interned strings of one reader: ids are stable while the reader lives."""

    def __init__(self, capacity: int = 1024, store_bytes: int = 1 << 16):
        self.table_hash = np.zeros(2 * capacity, np.uint64)
        self.table_id = np.full(2 * capacity, -1, np.int64)
        self.store = np.zeros(store_bytes, np.uint8)
        self.str_off = np.zeros(capacity, np.int64)
        self.str_len = np.zeros(capacity, np.int64)
        self.counts = np.zeros(2, np.int64)  # strings, bytes used
        self.names: list[str | None] = []  # decoded lazily (most ids are seen once)

    def __len__(self) -> int:
        return int(self.counts[0])

    def grow(self, max_string: int) -> None:
        """Room for one more name: a larger table, or (when the table has room) a store
        that fits any string up to `max_string` bytes."""
        n, used = int(self.counts[0]), int(self.counts[1])
        if 2 * (n + 1) > self.table_id.size or n + 1 > self.str_off.size:
            capacity = 2 * self.str_off.size
            self.str_off = np.concatenate([self.str_off, np.zeros_like(self.str_off)])
            self.str_len = np.concatenate([self.str_len, np.zeros_like(self.str_len)])
            self.table_hash = np.zeros(2 * capacity, np.uint64)
            self.table_id = np.full(2 * capacity, -1, np.int64)
            rehash(self.str_off, self.str_len, self.store, n, self.table_hash, self.table_id)
        else:
            size = max(2 * self.store.size, used + max_string + 1)
            self.store = np.concatenate([self.store, np.zeros(size - self.store.size, np.uint8)])

    def args(self):
        return self.table_hash, self.table_id, self.store, self.str_off, self.str_len, self.counts

    def bytes_of(self, sid: int) -> bytes:
        o, length = int(self.str_off[sid]), int(self.str_len[sid])
        return self.store[o:o + length].tobytes()

    def intern_text(self, text: str) -> int:
        """The id of a string that arrived through the slow path."""
        data = np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8)
        while True:
            sid = _intern(data, 0, data.size, *self.args())
            if sid >= 0:
                return int(sid)
            self.grow(data.size)
