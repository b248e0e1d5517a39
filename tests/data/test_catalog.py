import copy
import pickle

import pytest

from rcnnzoo.data import DatasetCatalog, Metadata, MetadataCatalog


def test_register_get_list_remove(catalog_names):
    catalog_names.append("tmp_ds_a")
    calls = []

    def load():
        calls.append(1)
        return [{"file_name": "a.jpg", "image_id": 1}]

    DatasetCatalog.register("tmp_ds_a", load)
    assert not calls, "registering must not load the data"
    assert "tmp_ds_a" in DatasetCatalog.list()
    assert DatasetCatalog.get("tmp_ds_a") == [{"file_name": "a.jpg", "image_id": 1}]
    assert len(calls) == 1
    DatasetCatalog.remove("tmp_ds_a")
    assert "tmp_ds_a" not in DatasetCatalog.list()


def test_duplicate_registration_is_an_error(catalog_names):
    catalog_names.append("tmp_ds_dup")
    DatasetCatalog.register("tmp_ds_dup", list)
    with pytest.raises(ValueError, match="already registered"):
        DatasetCatalog.register("tmp_ds_dup", list)


def test_unknown_name_lists_registered_and_suggests(catalog_names):
    catalog_names.append("tmp_ds_shapes")
    DatasetCatalog.register("tmp_ds_shapes", list)
    with pytest.raises(KeyError) as e:
        DatasetCatalog.get("tmp_ds_shapez")
    msg = str(e.value)
    assert "Did you mean 'tmp_ds_shapes'" in msg
    assert "coco_2017_val" in msg  # the registered names are listed
    with pytest.raises(KeyError, match="not registered"):
        DatasetCatalog.remove("no_such_dataset")


def test_loader_must_return_a_list(catalog_names):
    catalog_names.append("tmp_ds_gen")
    DatasetCatalog.register("tmp_ds_gen", lambda: (d for d in []))
    with pytest.raises(TypeError, match="list"):
        DatasetCatalog.get("tmp_ds_gen")


def test_metadata_set_get_and_errors(catalog_names):
    catalog_names.append("tmp_meta")
    meta = MetadataCatalog.get("tmp_meta")
    assert MetadataCatalog.get("tmp_meta") is meta
    meta.set(thing_classes=["a", "b"], evaluator_type="coco")
    assert meta.thing_classes == ["a", "b"]
    assert meta.get("missing", 7) == 7
    with pytest.raises(AttributeError) as e:
        _ = meta.thing_class
    assert "Did you mean 'thing_classes'" in str(e.value)
    assert "evaluator_type" in str(e.value)  # the set attributes are listed
    meta.set(thing_classes=["a", "b"])  # the same value again is fine
    with pytest.raises(ValueError, match="thing_classes"):
        meta.set(thing_classes=["b", "a"])
    MetadataCatalog.remove("tmp_meta")
    assert not hasattr(MetadataCatalog.get("tmp_meta"), "thing_classes")


def test_metadata_copies_and_pickles():
    meta = Metadata("x").set(thing_classes=["a"], year=2007)
    for clone in (copy.deepcopy(meta), pickle.loads(pickle.dumps(meta))):
        assert clone.thing_classes == ["a"] and clone.year == 2007 and clone.name == "x"
