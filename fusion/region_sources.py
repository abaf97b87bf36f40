"""Open the region input of a run: region-store folders, or ground-truth ("oracle") stores written on demand."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fusion.regions import StoreRegions
from grounding.region_store import HEADER_FILE, RegionStoreError


def store_folders(spec: str) -> list[Path]:
    """``spec`` -> store folders: a store, a folder whose sub-folders are stores, or several joined by commas."""
    folders: list[Path] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        path = Path(part).expanduser()
        if (path / HEADER_FILE).is_file():
            folders.append(path)
        elif path.is_dir() and (subs := sorted(p.parent for p in path.glob(f"*/{HEADER_FILE}"))):
            folders.extend(subs)
        else:
            raise RegionStoreError(f"{path}: not a region store (no {HEADER_FILE}) nor a folder of stores")
    if not folders:
        raise RegionStoreError(f"no region-store folder in {spec!r}")
    return folders


def oracle_store_folders(sources: Sequence[str | Path], out_dir: str | Path, progress: bool = True) -> list[Path]:
    """Write (once) the oracle store of every ground-truth grounding file into ``out_dir/<file stem>``."""
    from grounding.oracle import minilm_embedder, write_oracle_store

    out_dir = Path(out_dir)
    folders, embed = [], None
    for source in sources:
        source = Path(source)
        folder = out_dir / source.name.split(".")[0]
        if not (folder / HEADER_FILE).is_file():
            embed = embed or minilm_embedder()
            write_oracle_store(source, folder, embed, progress=progress, overwrite=folder.exists(),
                               metadata={"written_by": "fusion.region_sources"})
        folders.append(folder)
    return folders


def open_regions(spec: str, oracle_sources: Sequence[str | Path] = (), oracle_dir: str | Path = "") -> StoreRegions:
    """``spec`` is ``oracle`` (stores from ``oracle_sources`` written into ``oracle_dir``) or store folders."""
    if spec == "oracle":
        if not oracle_sources:
            raise ValueError("--regions oracle needs ground-truth grounding files (data.oracle_sources) for this "
                             "dataset; or write a store with `python -m grounding.oracle` and pass its folder")
        return StoreRegions(oracle_store_folders(oracle_sources, oracle_dir))
    return StoreRegions(store_folders(spec))


def dataset_oracle_sources(dataset: str, root: str, splits: Sequence[str], configured: Sequence[str] = ()) -> list[str]:
    """Ground-truth grounding files for ``--regions oracle``: ``configured`` (``${VAR}`` expanded), else SynthMed's
    ``grounding_<split>.coco.json`` of the used splits, else none."""
    from grounding.configio import expand_path

    if configured:
        return [expand_path(s) for s in configured]
    if dataset == "synthmed":
        folder = Path(expand_path(root))
        return [str(folder / f"grounding_{s}.coco.json") for s in splits if (folder / f"grounding_{s}.coco.json").is_file()]
    return []
