"""Reports over the bandwidth logs (``llmtwin bandwidth``): totals, rates, kernel vs model, plots.

The logs are written by :class:`shared.bwlog.BandwidthLog` on the edge daemons and the gateway:
JSON Lines, UTF-8, one object per line, rotated by size as ``path``, ``path.1``, ``path.2`` …
(a higher number is older). Every record carries the schema version ``v``, the time ``ts``
(epoch seconds, float), the ``side`` that logged it (``"edge"`` or ``"gateway"``) and the
``tenant``. Schema version 1 has two kinds of record.

**Message records**, one per message crossing the wire, as the logging side saw it::

    {"v": 1, "ts": 1780000000.123, "side": "edge", "tenant": "home1", "twin": "home1",
     "dir": "out", "type": "state", "rid": "9f3c…", "payload": 412, "compressed": 180, "frame": 283}

- ``twin``: the twin the message concerns (``""`` for replies and messages about no twin: PING,
  FETCH); ``dir``: ``"in"`` (received) or ``"out"`` (sent) from the logging side's point of view;
  ``type``: the message type (``state``, ``query``, ``hello`` …; any non-empty string except
  ``tcp_info``); ``rid``: the request id, hex (not needed by the reader);
- ``payload``: application bytes before compression (signature + header + body);
  ``compressed``: bytes handed to ZeroMQ; ``frame``: bytes on the TCP stream including ZMTP and
  CURVE framing (the model of :mod:`shared.metering`). Non-negative integers.

**Kernel samples** (``"type": "tcp_info"``), the kernel's TCP_INFO counters of one connection::

    {"v": 1, "ts": 1780000060.0, "side": "gateway", "tenant": "home1", "twin": "home1",
     "type": "tcp_info", "conn": "7", "event": "sample", "bytes_acked": 51234,
     "bytes_received": 48810, "bytes_sent": 51300, "bytes_retrans": 66, "segs_out": 410, "segs_in": 395}

- ``conn``: an id of the connection, unique per side and tenant while it lives (a string; an
  integer is accepted); ``event``: ``"sample"`` (periodic) or ``"close"`` (the last sample of the
  connection); ``twin`` is optional here;
- counters are cumulative over the connection's life (TCP sequence space, so the SYN and FIN
  octets are in them: at most 2 per connection): ``bytes_acked`` and ``bytes_received`` are
  required; ``bytes_sent`` (includes retransmissions), ``bytes_retrans``, ``segs_out`` and
  ``segs_in`` are optional and may be ``null`` (a kernel without them). The report takes each
  connection's last sample and sums them per side and tenant (details in
  :mod:`shared.bandwidth.summary`).

Reader rules: fields beyond these are ignored; a record without a valid ``v``, with a required
field missing or of the wrong type, a line that is not JSON, or a cut-short last line is an issue
(``file:line``) and is skipped; a record with ``v`` greater than 1 comes from a newer writer and is
skipped with an issue too. Every other record is still summarised.

Modules: :mod:`~shared.bandwidth.records` (typed records, validation), :mod:`~shared.bandwidth.issues`,
:mod:`~shared.bandwidth.reader` (files and rotated sets), :mod:`~shared.bandwidth.summary` (totals,
windows, reconciliation), :mod:`~shared.bandwidth.render` (tables, JSON), :mod:`~shared.bandwidth.plot`
and :mod:`~shared.bandwidth.baselines` (PNG, matplotlib loaded lazily), :mod:`~shared.bandwidth.follow`
(live tail), :mod:`~shared.bandwidth.units` (argument parsing and formatting).
"""
