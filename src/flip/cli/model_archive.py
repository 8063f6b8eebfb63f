"""Unpack a model the hub sent (a zip of one registry folder) into a local registry."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

from flip.private_files import private_folder, write_private

#: The files a model's folder may hold.
MODEL_FILES = {"model.pt", "lineage.json", "MODEL_CARD.md"}
#: The most bytes a model's files may unpack to (FLIP's models are far smaller): a zip of
#: a few megabytes can say it holds terabytes of zeros.
MAX_UNPACKED = 1 << 30


def unpack(archive: bytes, registry: Path) -> Path:
    """Write the archive's one model folder under `registry`; that folder.

    Refuses (ValueError) an archive that is not one folder of known files, so a hub
    can never write anywhere else, and one whose files unpack to over MAX_UNPACKED bytes
    (a zip bomb), before writing anything. Reading a file stops at the size the archive
    declares for it.
    """
    try:
        zipped = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile:
        raise ValueError("the hub's answer is not a model archive (not a zip)") from None
    with zipped:
        names = [PurePosixPath(n) for n in zipped.namelist()]
        folders = {n.parts[0] for n in names}
        if len(folders) != 1 or any(
            n.is_absolute()
            or len(n.parts) != 2
            or n.name not in MODEL_FILES
            or n.parts[0].startswith(".")
            or "\\" in n.parts[0]
            for n in names
        ):
            raise ValueError("the hub's model archive is not one folder of model files")
        size = sum(info.file_size for info in zipped.infolist())
        if size > MAX_UNPACKED:
            raise ValueError(
                f"the hub's model archive unpacks to {size} bytes, over the {MAX_UNPACKED} "
                "a model's files may hold"
            )
        folder = private_folder(registry / folders.pop())
        for name in names:
            write_private(folder / name.name, zipped.read(str(name)))
    return folder
