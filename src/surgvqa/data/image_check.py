"""Check one raw image the way the ingest stage needs: inside the images folder, a real JPEG, decodable, and
of a size the model's processor takes.

Files are opened relative to the images folder with O_NOFOLLOW, so a symlink (to anywhere) is refused before
anything it points at is opened: nothing outside the data folder is ever read. Sizes come from the header, so
an oversized picture is refused before it is decoded (a decompression bomb never reaches memory).

The model's limits: the project's bases are Qwen2-VL (every `model.base` kind, tiny, synthetic, a Hub id or a
local path, loads through `Qwen2VLForConditionalGeneration` and the Qwen2-VL image processor: model/load.py,
model/processor.py), so the limits below are Qwen2-VL's image processor's; if another family is added, its
processor's limits go here. They are written out rather than imported: importing the processor class pulls in
transformers and torch (about 5 s and 360 MB, measured with `python -X importtime`; no lighter transformers
module holds them), which ingest and `surgvqa data import` otherwise never need. tests/data/test_image_check.py
checks them against the real class (`Qwen2VLImageProcessorPil`, the one model/processor.py uses) and
`processor_refusal` against the real `smart_resize` and processor on many shapes, so a transformers upgrade that
changes them fails a test. The bases agree: the tiny one is built with patch 14 and merge 2 (model/tiny.py), the
synthetic one has Qwen/Qwen2-VL-2B-Instruct's vision config (patch 14, spatial merge 2: model/synthetic.py).
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from PIL import Image

from surgvqa.data.qa_record import NO_PROBLEM, Problem
from surgvqa.errors import SurgvqaError
from surgvqa.io import is_safe_img_id

# The raw layout names every image <img_id>.jpg, and `surgvqa data import` re-encodes anything else to JPEG, so
# a PNG or WebP behind a .jpg name is a broken export: refused, not decoded under a false name (MPO is the
# multi-picture JPEG some cameras write: JPEG bytes with an extra index).
JPEG_FORMATS = ("JPEG", "MPO")
# The processor cuts images into patch_size pixels and merges merge_size x merge_size patches into one token:
# a side shorter than that holds less than one token of picture. Old transformers refused such images outright
# ("must be larger than factor"); 5.x silently blows a 1x1 picture up to 56x56 of one colour. Refused here.
PATCH_SIZE = 14  # Qwen2VLImageProcessor(Pil).patch_size
MERGE_SIZE = 2  # Qwen2VLImageProcessor(Pil).merge_size
FACTOR = PATCH_SIZE * MERGE_SIZE
# smart_resize raises "absolute aspect ratio must be smaller than 200" when max(w, h) / min(w, h) > 200; that is
# the only image it refuses (it resizes every other to the pixel range, whatever model.image_pixels is).
MAX_ASPECT_RATIO = 200
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)  # O_NONBLOCK: a FIFO never hangs


class ImageChecker:
    """Checks images by img_id inside one images folder; use as a context manager (it holds the folder open)."""

    def __init__(self, images_dir: Path, max_pixels: int) -> None:
        self.images_dir, self.max_pixels, self.dir_fd = Path(images_dir), max_pixels, None

    def __enter__(self) -> ImageChecker:
        try:
            self.dir_fd = os.open(self.images_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            self.dir_fd = None  # no images folder: every row is a missing image, counted as such
        except OSError as e:  # ELOOP / ENOTDIR: a symlink or a file where the folder should be
            raise SurgvqaError(f"{self.images_dir} is not a plain folder ({e.strerror}): the images must be "
                               "files inside the data folder, not a link to elsewhere; copy them in") from e
        return self

    def __exit__(self, *exc) -> None:
        if self.dir_fd is not None:
            os.close(self.dir_fd)

    def count_jpg(self) -> int:
        """How many `*.jpg` entries the folder has (names only, streamed, nothing is opened)."""
        if self.dir_fd is None:
            return 0
        with os.scandir(self.dir_fd) as entries:
            return sum(1 for e in entries if e.name.endswith(".jpg"))

    def check(self, img_id: str) -> Problem:
        """NO_PROBLEM when `images/<img_id>.jpg` is fit for the model, else (reason, detail); img_id must be safe."""
        if not is_safe_img_id(img_id):  # a name with a separator would let dir_fd-relative opening leave the folder
            raise SurgvqaError(f"img_id {img_id!r} is not a plain file name; refusing to build a path from it")
        name = f"{img_id}.jpg"
        if self.dir_fd is None:
            return "missing_image", f"no folder {self.images_dir}"
        try:
            fd = os.open(name, _FLAGS, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return "missing_image", f"no file {self.images_dir / name}"
        except OSError as e:  # ELOOP: the name is a symlink, and O_NOFOLLOW refused to follow it
            return "unsafe_image_file", f"{name} is a symbolic link or cannot be opened ({e.strerror}); not followed"
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return "unsafe_image_file", f"{name} is not a regular file"
            if st.st_size == 0:
                return "undecodable_image", "the file is empty (0 bytes)"
            return self._check_open(f)

    def _check_open(self, f) -> Problem:
        try:
            with warnings.catch_warnings():
                # The pixel limit below is ours; Pillow's own warning (and its error at twice its limit) are
                # reported as image_too_large too.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as im:  # reads the header only
                    fmt, (width, height) = im.format, im.size
                    if fmt not in JPEG_FORMATS:
                        return "wrong_image_format", f"{fmt} data in a .jpg file (`surgvqa data import` re-encodes)"
                    if width * height > self.max_pixels:
                        return "image_too_large", (f"{width}x{height} = {width * height} pixels > "
                                                   f"ingest.max_image_pixels {self.max_pixels}")
                    refused = processor_refusal(width, height)
                    if refused[0]:
                        return refused
                    im.verify()  # structure and markers
                f.seek(0)
                with Image.open(f) as im:
                    im.load()  # verify() does not decode: a truncated JPEG only fails here
        except Image.DecompressionBombError as e:
            return "image_too_large", f"DecompressionBombError: {e}"
        except (OSError, SyntaxError, ValueError) as e:
            return "undecodable_image", f"{type(e).__name__}: {e}"
        return NO_PROBLEM


def processor_refusal(width: int, height: int) -> Problem:
    """NO_PROBLEM when Qwen2-VL's image processor takes a width x height picture and it holds at least one image
    token a side, else (reason, detail)."""
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):  # smart_resize's rule and words (its ValueError)
        ratio = max(width, height) / min(width, height) if min(width, height) else float("inf")
        return "processor_refuses_image", (f"{width}x{height}: Qwen2-VL's image processor says: absolute aspect "
                                           f"ratio must be smaller than {MAX_ASPECT_RATIO}, got {ratio}")
    if min(width, height) < FACTOR:
        return "image_too_small", (f"{width}x{height}: a side below {FACTOR} pixels (patch {PATCH_SIZE} "
                                   f"x merge {MERGE_SIZE}) holds less than one image token")
    return NO_PROBLEM
