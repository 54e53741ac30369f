"""What `sparsify(..., in_place=True)` did, saved with the model so it can be redone on load.

A model rewritten in place keeps its own class and config: a keras-hub
backbone's config holds only its constructor's arguments, so Keras rebuilds
it dense and cannot place the sparse layers' variables. The rewrite is
recorded on the model and written into the `.keras` archive beside the
weights (`assets/keras_str_sparsify.json`); `keras_str.load_model` rebuilds
the dense model, sparsifies it the same way, then loads the weights.
"""

import json
import os

import keras

RECIPE_FILE = "keras_str_sparsify.json"
ARCHIVE_MEMBER = f"assets/{RECIPE_FILE}"
FORMAT = 1


class Recipe:
    """The arguments of one in-place `sparsify` and which layers it kept dense.

    `decisions` lists, in the order `sparsify` met them, each layer's class
    name and whether it was kept dense: replaying them on a model built
    from the same config keeps the same layers dense, even auto-named ones
    (whose names change from one process to the next).
    """

    def __init__(self, method, weight_decay=None, decisions=None):
        self.method = method
        self.weight_decay = weight_decay
        self.decisions = list(decisions or [])

    def recorder(self, should_keep_dense):
        """Wraps a keep-dense predicate so that each answer is recorded."""

        def record(layer):
            keep = bool(should_keep_dense(layer))
            self.decisions.append([type(layer).__name__, keep])
            return keep

        return record

    def replayer(self):
        """A keep-dense predicate that gives the recorded answers, checking each layer's class."""
        decisions = iter(self.decisions)

        def replay(layer):
            try:
                class_name, keep = next(decisions)
            except StopIteration:
                class_name, keep = None, None
            if class_name != type(layer).__name__:
                raise ValueError(
                    "The model rebuilt from the saved config does not match the "
                    "sparsified one: at this step `sparsify` met a "
                    f"{class_name} and now meets {type(layer).__name__} "
                    f"{layer.name!r}. Was the file saved by another version of "
                    "the model's class?"
                )
            return keep

        return replay

    def to_json(self):
        return json.dumps(
            {
                "format": FORMAT,
                "method": keras.saving.serialize_keras_object(self.method),
                "weight_decay": self.weight_decay,
                "decisions": self.decisions,
            }
        )

    @classmethod
    def from_json(cls, text, source):
        config = json.loads(text)
        if config.get("format") != FORMAT:
            raise ValueError(
                f"{source!r} records a keras-str rewrite in format "
                f"{config.get('format')!r}; this keras-str reads format {FORMAT}."
            )
        return cls(
            keras.saving.deserialize_keras_object(config["method"]),
            weight_decay=config["weight_decay"],
            decisions=config["decisions"],
        )


def attach(model, recipe):
    """Makes `model.save(...)` write `recipe` beside the weights.

    Keras writes a saveable's assets when it has `save_assets`; set on this
    model only, so `ModelCheckpoint` and `model.save` both carry it.
    """

    def save_assets(directory):
        path = os.path.join(directory, RECIPE_FILE)
        with open(path, "w") as file:
            file.write(recipe.to_json())

    # Plain attributes: Keras tracks layers and variables, not functions.
    object.__setattr__(model, "save_assets", save_assets)
    object.__setattr__(model, "_keras_str_recipe", recipe)


def recipe_of(model):
    """The `Recipe` of a model `sparsify(..., in_place=True)` rewrote, or `None`."""
    return vars(model).get("_keras_str_recipe") if isinstance(model, keras.Model) else None


def detach(model):
    """Forgets the rewrite (`strip(model, in_place=True)` made the model plain again)."""
    for name in ("save_assets", "_keras_str_recipe"):
        if name in vars(model):
            object.__delattr__(model, name)
