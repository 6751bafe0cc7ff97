"""Tests of mlcv.config: experiment argument strings and durations in steps or epochs."""

import ml_collections
import pytest

from mlcv.config import ConfigError, parse_arg, steps


def test_parse_arg_none_and_empty_give_defaults():
    """No argument string leaves every default as it is."""
    for arg in (None, "", " , "):
        cfg = parse_arg(arg, depth=20, runlocal=False)
        assert cfg.depth == 20
        assert cfg.runlocal is False


def test_parse_arg_bare_word_sets_true():
    """A bare word (no '=') sets that key to True."""
    cfg = parse_arg("runlocal", runlocal=False, depth=20)
    assert cfg.runlocal is True
    assert cfg.depth == 20


def test_parse_arg_literals_and_strings():
    """Values parse as Python literals where they can and stay strings otherwise."""
    cfg = parse_arg(
        "depth=56, lr=1e-3, flag=False, name=resnet, quoted='a b', none=None",
        depth=20,
        lr=0.1,
        flag=True,
        name="x",
        quoted="",
        none=1,
    )
    assert cfg.depth == 56 and isinstance(cfg.depth, int)
    assert cfg.lr == 0.001 and isinstance(cfg.lr, float)
    assert cfg.flag is False
    assert cfg.name == "resnet"
    assert cfg.quoted == "a b"
    assert cfg.none is None


def test_parse_arg_commas_inside_brackets_stay_in_value():
    """Commas inside (), [] and {} do not split the argument string."""
    cfg = parse_arg("sizes=(1, 2, 3),ws=[4,5],d={'a': 1, 'b': 2},runlocal", sizes=(0,), ws=[], d={}, runlocal=False)
    assert tuple(cfg.sizes) == (1, 2, 3)
    assert list(cfg.ws) == [4, 5]
    assert dict(cfg.d) == {"a": 1, "b": 2}
    assert cfg.runlocal is True


def test_parse_arg_value_with_equals_sign_is_a_string():
    """Only the first '=' separates key and value."""
    cfg = parse_arg("expr=a=b", expr="")
    assert cfg.expr == "a=b"


def test_parse_arg_unknown_key_raises_naming_it():
    """A key that is not a default is a ConfigError whose message names the key and the valid ones."""
    with pytest.raises(ConfigError, match="'dpeth'") as info:
        parse_arg("dpeth=56", depth=20, runlocal=False)
    assert "depth" in str(info.value) and "runlocal" in str(info.value)
    with pytest.raises(ConfigError, match="'typo'"):
        parse_arg("typo", depth=20)


def _cfg(**kwargs):
    return ml_collections.ConfigDict(kwargs)


def test_steps_by_steps():
    """<name>_steps is returned as an int, independent of steps_per_epoch."""
    assert steps(_cfg(train_steps=100, train_epochs=None), "train", 7) == 100


def test_steps_by_epochs():
    """<name>_epochs is multiplied by steps_per_epoch: 3 epochs x 39 steps = 117."""
    assert steps(_cfg(train_epochs=3), "train", 39) == 117
    assert steps(_cfg(train_epochs=2.5, train_steps=None), "train", 10) == 25


def test_steps_fractional_epochs_round_up():
    """0.25 x 10 = 2.5 -> 3 steps; 0.01 x 10 = 0.1 -> 1 step, never zero."""
    assert steps(_cfg(eval_every_epochs=0.25), "eval_every", 10) == 3
    assert steps(_cfg(eval_every_epochs=0.01), "eval_every", 10) == 1
    assert steps(_cfg(eval_every_epochs=1 / 3), "eval_every", 9) == 3


def test_steps_whole_product_of_decimal_epochs_is_not_rounded_up():
    """1.1 epochs x 100 steps/epoch is exactly 110 steps, 0.07 x 100 exactly 7."""
    assert steps(_cfg(train_epochs=1.1), "train", 100) == 110
    assert steps(_cfg(train_epochs=0.07), "train", 100) == 7


def test_steps_both_set_steps_win():
    """With both keys set, <name>_steps wins (an override in steps beats an experiment written in epochs)."""
    assert steps(_cfg(train_steps=10, train_epochs=1.0), "train", 39) == 10


def test_steps_neither_set_is_none():
    """Neither key set (missing or None) gives None."""
    assert steps(_cfg(), "train", 10) is None
    assert steps(_cfg(train_steps=None, train_epochs=None), "train", 10) is None
