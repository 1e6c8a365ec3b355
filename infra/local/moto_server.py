"""moto's server (the pinned version in requirements.txt), with DynamoDB transactions that keep other
requests' writes and cost what they touch, queries that read only the partition they name, SQS sends
that do not count the queue, a clock read per message that costs little, and a request dispatch that
does not dominate its time.

moto 5.2's TransactWriteItems backs up every table it touches with a deep copy and, when the transaction
fails (a condition not met, say a duplicate delivery's), puts the whole copy back. Two consequences the
soak benchmark found: each transaction costs time and memory in proportion to the tables' size (seconds
and gigabytes once they hold tens of thousands of items), and a failed one silently undoes every write
other requests made to those tables meanwhile, with their stream records: acknowledged writes lost, which
DynamoDB never does.

Here a transaction remembers the items it touches and, if it fails, restores only those; DynamoDB writes
(single-item and transactional) run one at a time, so no write interleaves with a transaction. The stream
records of a failed transaction's partial writes stay (moto numbers records by their position, so
removing them would renumber the next ones under a reader that had seen them, and skip those): a pipe
may hand on a reference to an item that is not there, which every consumer reads as nothing to do.

Usage: the same arguments as moto_server (infra/lib.sh starts it).
"""

import copy
import re
import sys
import threading
import time

from moto.dynamodb import models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.core import utils as moto_utils
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs.models import Queue, SQSBackend
from moto.server import main
from werkzeug.serving import WSGIRequestHandler

WRITES = threading.RLock()


def _one_at_a_time(fn):
    def run(self, *args, **kwargs):
        with WRITES:
            return fn(self, *args, **kwargs)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


for _name in ("put_item", "update_item", "delete_item", "get_item"):
    setattr(DynamoDBBackend, _name, _one_at_a_time(getattr(DynamoDBBackend, _name)))


class _Table:
    """What moto's transaction keeps instead of a deep copy of a table: the table itself."""

    def __init__(self, table):
        self.table = table


class _Copy:
    """Stands in for the `copy` module inside moto's transaction."""

    @staticmethod
    def deepcopy(x, memo=None):
        return _Table(x) if isinstance(x, Table) else copy.deepcopy(x, memo)


_transact = DynamoDBBackend.transact_write_items


def _key(table, op_type, op):
    attrs = op["Item"] if op_type == "Put" else op["Key"]
    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    return hash_key, range_key


def transact_write_items(self, transact_items):
    with WRITES:
        before = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = self.tables[op["TableName"]]
                hash_key, range_key = _key(table, op_type, op)
                before.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
            except Exception:  # a malformed entry: moto's own checks report it
                continue
        models.copy = _Copy
        try:
            return _transact(self, transact_items)
        finally:
            models.copy = copy
            rolled_back = False
            for name, t in list(self.tables.items()):
                if isinstance(t, _Table):
                    self.tables[name] = t.table
                    rolled_back = True
            if rolled_back:
                for table, hash_key, range_key, old in reversed(before):
                    if range_key is not None:
                        if old is None:
                            table.items.get(hash_key, {}).pop(range_key, None)
                        else:
                            table.items[hash_key][range_key] = old
                    elif old is None:
                        table.items.pop(hash_key, None)
                    else:
                        table.items[hash_key] = old


transact_write_items.__doc__ = _transact.__doc__
DynamoDBBackend.transact_write_items = transact_write_items

# Which of moto's services answers a request is worked out anew for every request, under one lock, by
# matching the host against every service's URL patterns before reading the signature: about a third of
# the emulator's time under load. The service a signature names, with the host and the JSON target's
# prefix, always leads to the same one, so it is remembered.
_SIGNED_FOR = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/([^/]+)/")
_get_application = DomainDispatcherApplication.get_application
_APPS = {}


def get_application(self, environ):
    signed = _SIGNED_FOR.search(environ.get("HTTP_AUTHORIZATION", ""))
    path = environ.get("PATH_INFO", "")
    if not signed or path.startswith("/moto-api"):
        return _get_application(self, environ)
    key = (environ.get("HTTP_HOST"), signed.groups(), environ.get("HTTP_X_AMZ_TARGET", "").split(".")[0])
    app = _APPS.get(key)
    if app is None:
        app = _APPS[key] = _get_application(self, environ)
    return app


DomainDispatcherApplication.get_application = get_application


# A query on a table's own key reads one partition. moto 5.2 lists and sorts every item of the table for
# each query (its `all_items`), so a query's cost grows with the table: at tens of thousands of items the
# soak spent most of the emulator's time there. While a base-table query runs, `all_items` answers with
# the queried partition only (the same items the query keeps; index queries still read them all), and
# with only the items its sort-key condition keeps: moto then sizes every item it looks at (for the 1 MB
# page) before testing that condition, a cost per query that grew with the partition (a merchant's
# payments, say). The items are the same, in the same order; ScannedCount counts what the key condition
# matched, as DynamoDB's does.
_query_partition = threading.local()
_all_items = Table.all_items
_table_query = Table.query


def all_items(self):
    only = getattr(_query_partition, "key", None)
    if only is None or only[0] is not self:
        return _all_items(self)
    _, hash_key, comparison, values = only
    part = self.items.get(hash_key) if hash_key in self.items else None
    if part is None:
        return []
    items = list(part.values()) if self.range_key_attr else [part]
    if comparison and self.range_key_attr:
        items = [i for i in items if i.range_key is not None and i.range_key.compare(comparison, values)]
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def query(self, hash_key, *args, **kwargs):
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name or hash_key is None:
        return _table_query(self, hash_key, *args, **kwargs)
    comparison = kwargs.get("range_comparison", args[0] if len(args) > 0 else None)
    values = kwargs.get("range_objs", args[1] if len(args) > 1 else [])
    # Keys of more than one attribute are left to moto.
    if kwargs.get("range_key_conditions") and len(kwargs["range_key_conditions"]) > 1:
        comparison = None
    _query_partition.key = (self, hash_key, comparison, values)
    try:
        return _table_query(self, hash_key, *args, **kwargs)
    finally:
        _query_partition.key = None


Table.all_items = all_items
Table.query = query


# Each message received is checked against its queue's retention period, which moto reads by building
# every attribute of the queue (message counts included, each a pass over the queue's messages): a cost
# per message that grows with the queue. Read the one attribute.
def is_message_valid_based_on_retention_period(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > time.time()


SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period


# Every SendMessage reads the queue's ContentBasedDeduplication through its whole attribute map, which
# counts the queue's messages three times (visible, in flight, delayed): a pass over the queue per
# message sent, quadratic in a backlog. While a send runs, the counts (which it never uses) answer 0.
_sending = threading.local()


def _count_unless_sending(prop):
    def get(self):
        return 0 if getattr(_sending, "on", False) else prop.fget(self)

    return property(get, doc=prop.__doc__)


for _name in (
    "approximate_number_of_messages",
    "approximate_number_of_messages_not_visible",
    "approximate_number_of_messages_delayed",
):
    setattr(Queue, _name, _count_unless_sending(getattr(Queue, _name)))

_send_message = SQSBackend.send_message


def send_message(self, *args, **kwargs):
    _sending.on = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _sending.on = False


send_message.__doc__ = _send_message.__doc__
SQSBackend.send_message = send_message


# moto reads the clock for each message it looks at (is it visible, is it delayed) by building two
# datetimes and subtracting them: most of the emulator's time under a backlog. The same instant, read
# from the clock directly (a datetime given is still converted as before).
_unix_time = moto_utils.unix_time
_unix_time_millis = moto_utils.unix_time_millis


def unix_time(dt=None):
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None):
    return time.time() * 1000.0 if dt is None else _unix_time(dt) * 1000.0


for _module in list(sys.modules.values()):
    if getattr(_module, "__name__", "").startswith("moto"):
        if getattr(_module, "unix_time", None) is _unix_time:
            _module.unix_time = unix_time
        if getattr(_module, "unix_time_millis", None) is _unix_time_millis:
            _module.unix_time_millis = unix_time_millis


# One log line per request, written under the logging module's lock by every request thread: time the
# emulator spends serialised on a file nobody reads under load. Errors are still logged.
WSGIRequestHandler.log_request = lambda self, code="-", size="-": None

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
