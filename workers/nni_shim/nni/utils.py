"""``nni.utils.merge_parameter``, as NNI's examples use it (standard library only)."""

from __future__ import annotations

from typing import Any


def merge_parameter(base_params: Any, override_params: dict[str, Any]) -> Any:
    """Update ``base_params`` (an ``argparse.Namespace`` or a dict) with ``override_params``,
    casting each value to the type of the value it replaces, as NNI does.

    Raises:
        ValueError: a key that ``base_params`` does not have.
    """
    if base_params is None:
        return override_params
    is_dict = isinstance(base_params, dict)
    for key, value in override_params.items():
        current = base_params.get(key) if is_dict else getattr(base_params, key, None)
        present = key in base_params if is_dict else hasattr(base_params, key)
        if not present:
            raise ValueError(f"key {key!r} not found in base parameters")
        if current is not None and value is not None and type(current) is not type(value):
            value = type(current)(value)
        if is_dict:
            base_params[key] = value
        else:
            setattr(base_params, key, value)
    return base_params


__all__ = ["merge_parameter"]
