"""trustrec.data: datasets, loaders, known-dataset fetching, filters, splits, forget sets
and forget requests."""

from trustrec.data.dataset import Dataset
from trustrec.data.fetch import CATALOG, cache_dir, cached, fetch
from trustrec.data.filter import k_core
from trustrec.data.info import dataset_info
from trustrec.data.loaders import (
    load_dataset,
    load_movielens_1m,
    load_movielens_100k,
    load_path,
    load_recbole,
    load_table,
)
from trustrec.data.request import ForgetRequest
from trustrec.data.selection import (
    ITEM_SELECTIONS,
    SELECTIONS,
    select_forget_interactions,
    select_forget_items,
    select_forget_users,
)
from trustrec.data.split import Split, leave_last_out, random_split

__all__ = [
    "CATALOG",
    "ITEM_SELECTIONS",
    "SELECTIONS",
    "Dataset",
    "ForgetRequest",
    "Split",
    "cache_dir",
    "cached",
    "dataset_info",
    "fetch",
    "k_core",
    "leave_last_out",
    "load_dataset",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_path",
    "load_recbole",
    "load_table",
    "random_split",
    "select_forget_interactions",
    "select_forget_items",
    "select_forget_users",
]
