"""--json and --csv: every figure of every row, with the environment and the ceilings used.

JSON: ``{"schema", "environment", "settings", "ceilings", "summary", "rows": [...]}``; a row's
``time`` and ``compare.time`` are ``{"median_s", "min_s", "max_s", "repeat", "method"}`` or null
when the row was not timed. ``pass`` says what was timed ('forward', 'backward', 'both'); a backward
row's ``rel_errs`` (and ``compare.rel_errs``) give each gradient's error (``{"dx": ..., "dkernel":
...}``; null for forward rows), flattened in the CSV as ``rel_err_dx``, ``compare_rel_err_dx``, ... Non-finite numbers (an error of inf after a NaN) become null; the
row's ``status`` and ``error`` say why. ``flags`` lists what not to trust in a row (``runner.RATIO_FLAG``:
its ratio stayed outside ``runner.RATIO_BOUNDS`` after a re-measurement; the row's notes give both
measurements); the summary's ``flagged_rows`` counts them. CSV: one line per row with the same fields flattened
(``time_median_s``, ``compare_ratio``, ...), and the environment and ceilings repeated on each
line as ``env_*`` / ``ceilings_*`` columns so every line stands alone.
"""
import csv
import dataclasses
import json
import math

SCHEMA = "gpuconv-bench/1"
TIME_KEYS = ("median_s", "min_s", "max_s", "repeat", "method")


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _plain(v):
    """Tuples to lists (JSON), recursively; non-finite floats to None."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return _finite(v)


def row_record(r):
    row = r.row
    comp = r.compare.as_dict() if r.compare is not None else None
    if comp is not None:
        comp = {k: _finite(v) if not isinstance(v, dict) else v for k, v in comp.items()}
        comp["rel_errs"] = _finite_values(comp["rel_errs"])
    return {
        "id": row.id,
        "description": row.description,
        "op": row.op,
        "op_text": row.op_text(),
        "pass": r.pass_name,
        "shape": row.shape_text(),
        "N": row.N, "C": row.C, "K": row.K,
        "spatial": _plain(row.spatial),
        "k": _plain(row.k), "s": _plain(row.s), "d": _plain(row.d), "g": row.g, "dm": row.dm,
        "padding": row.padding, "bias": row.bias, "activation": row.activation,
        "output_shape": _plain(row.output_shape(r.data_format)),
        "dtype": r.dtype,
        "data_format": r.data_format,
        "status": r.status,
        "error": r.error,
        "rel_err": _finite(r.rel_err),
        "rel_errs": _finite_values(r.rel_errs),
        "threshold": r.threshold,
        "checked_items": r.checked_items,
        "time": r.time.as_dict() if r.time else None,
        "gflop": r.flop / 1e9,
        "tensor_gflop": r.tensor_flop / 1e9,
        "bytes": r.bytes,
        "tflops": r.tflops,
        "gbs": r.gbs,
        "roofline_s": r.roofline_s,
        "bound": r.bound,
        "roofline_pct": r.roofline_pct,
        "compare": comp,
        "notes": list(r.notes),
        "flags": list(r.flags),
    }


def _finite_values(errors):
    return None if errors is None else {k: _finite(v) for k, v in errors.items()}


def document(results, environment, settings, ceilings, summary):
    return {
        "schema": SCHEMA,
        "environment": dict(environment),
        "settings": dataclasses.asdict(settings),
        "ceilings": ceilings.as_dict(),
        "summary": {k: _finite(v) for k, v in summary.items()},
        "rows": [row_record(r) for r in results],
    }


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=False)
        f.write("\n")


def _flat_time(prefix, t):
    return {f"{prefix}{k}": (t or {}).get(k) for k in TIME_KEYS}


def csv_lines(doc):
    """Flatten :func:`document` into one dict per row (the columns are the union, in order)."""
    env = {f"env_{k}": v for k, v in doc["environment"].items()}
    ceil = {f"ceilings_{k}": v for k, v in doc["ceilings"].items()}
    lines = []
    for rec in doc["rows"]:
        flat = {}
        for k, v in rec.items():
            if k in ("time", "compare", "notes", "rel_errs", "flags"):
                continue
            flat[k] = "x".join(str(x) for x in v) if isinstance(v, list) else v
        flat.update({f"rel_err_{k}": v for k, v in (rec["rel_errs"] or {}).items()})
        flat.update(_flat_time("time_", rec["time"]))
        comp = rec["compare"] or {}
        for k in ("library", "device", "status", "rel_err", "ratio", "note"):
            flat[f"compare_{k}"] = comp.get(k)
        flat.update({f"compare_rel_err_{k}": v for k, v in (comp.get("rel_errs") or {}).items()})
        flat.update(_flat_time("compare_time_", comp.get("time")))
        flat["notes"] = " | ".join(rec["notes"])
        flat["flags"] = " ".join(rec["flags"])  # flag names have no spaces
        flat.update(env)
        flat.update(ceil)
        lines.append(flat)
    return lines


def write_csv(path, doc):
    lines = csv_lines(doc)
    fields = list(lines[0]) if lines else ["id"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for line in lines:
            writer.writerow({k: "" if v is None else v for k, v in line.items()})
