"""The registry: lookup, nested builds, and the errors a user sees for typos."""

from __future__ import annotations

import pytest

from facedet.registry import ConfigError, Registry, build

THINGS = Registry("thing")
PARTS = Registry("part")


@PARTS.register("wheel")
class Wheel:
    def __init__(self, *, size: int = 16) -> None:
        self.size = size


@THINGS.register("bike")
class Bike:
    def __init__(self, *, wheels: list, frame: str, gears: int = 1) -> None:
        self.wheels, self.frame, self.gears = wheels, frame, gears


def test_build_recurses_into_nested_typed_nodes():
    bike = build({"type": "bike", "frame": "steel", "wheels": [{"type": "wheel", "size": 20}, {"type": "wheel"}]},
                 THINGS)
    assert isinstance(bike, Bike)
    assert [type(w) for w in bike.wheels] == [Wheel, Wheel]
    assert [w.size for w in bike.wheels] == [20, 16]
    assert bike.frame == "steel" and bike.gears == 1


def test_qualified_nested_name_selects_the_registry():
    bike = build({"type": "bike", "frame": "x", "wheels": [{"type": "part:wheel", "size": 3}]}, THINGS)
    assert bike.wheels[0].size == 3


def test_unknown_name_lists_known_names_and_closest_match():
    with pytest.raises(ConfigError) as e:
        build({"type": "bik", "frame": "x", "wheels": []}, THINGS, where="model.thing")
    msg = str(e.value)
    assert "'bik'" in msg and "model.thing.type" in msg and "bike" in msg and "Did you mean 'bike'" in msg


@pytest.mark.parametrize("where", ["model.thing", "model"])
def test_a_mistyped_nested_name_is_suggested_from_its_own_registry(where):
    # 'wheeel' is in no registry: named against the parent's ("Known things: bike") the user would
    # get no useful suggestion; the closest name anywhere ('wheel') tells which registry was meant
    with pytest.raises(ConfigError) as e:
        build({"type": "bike", "frame": "x", "wheels": [{"type": "wheeel"}]}, THINGS, where=where)
    msg = str(e.value)
    assert f"Unknown part 'wheeel' at '{where}.wheels[0].type'" in msg and "Did you mean 'wheel'" in msg


def test_a_nested_node_named_like_a_registry_is_checked_against_it():
    import facedet.losses  # noqa: F401  (fills LOSSES and LANDMARK_LOSSES)
    from facedet.registry import LOSSES

    with pytest.raises(ConfigError, match="Unknown landmark_loss 'wigg' at 'model.loss.landmark_loss.type'. "
                                          "Known landmark_losses: smooth_l1, wing"):
        build({"type": "yolo_loss", "landmark_loss": {"type": "wigg"}}, LOSSES, where="model.loss")


def test_unknown_key_names_it_and_the_accepted_ones():
    with pytest.raises(ConfigError) as e:
        build({"type": "bike", "frame": "x", "wheels": [], "gaers": 3}, THINGS, where="model.thing")
    msg = str(e.value)
    assert "model.thing.gaers" in msg and "Did you mean 'gears'" in msg
    assert "wheels" in msg and "frame" in msg


def test_missing_required_key_is_named():
    with pytest.raises(ConfigError, match=r"model\.thing\.frame"):
        build({"type": "bike", "wheels": []}, THINGS, where="model.thing")


def test_framework_supplied_argument_cannot_be_set_in_config():
    with pytest.raises(ConfigError, match="set by the framework"):
        build({"type": "bike", "frame": "x", "wheels": []}, THINGS, frame="y")
    assert build({"type": "bike", "wheels": []}, THINGS, frame="y").frame == "y"


def test_node_without_type_is_rejected():
    with pytest.raises(ConfigError, match="no 'type'"):
        build({"frame": "x"}, THINGS)


def test_registering_a_second_object_under_a_taken_name_fails():
    with pytest.raises(KeyError):
        THINGS.register("bike")(Wheel)
