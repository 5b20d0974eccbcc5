"""Audio in: loading, padding by tiling, segmentation, the input table (single- or multi-label, annotations)."""

from ._config import AudioConfig as AudioConfig
from ._config import SegmentConfig as SegmentConfig
from ._annotations import file_tags as file_tags
from ._annotations import has_tags as has_tags
from ._annotations import parse_events as parse_events
from ._annotations import parse_tags as parse_tags
from ._annotations import tags_json as tags_json
from ._annotations import tags_text as tags_text

from ._load import audio_duration as audio_duration
from ._load import check_audio as check_audio
from ._load import load_audio as load_audio
from ._load import pad_audio as pad_audio
from ._segment import segment_audio as segment_audio
from ._segment import segment_bounds as segment_bounds
from ._table import AUDIO_EXTENSIONS as AUDIO_EXTENSIONS
from ._table import read_table as read_table
from ._table import sort_labels as sort_labels

__all__ = [
    "AudioConfig",
    "SegmentConfig",
    "audio_duration",
    "check_audio",
    "load_audio",
    "pad_audio",
    "segment_audio",
    "segment_bounds",
    "read_table",
    "sort_labels",
    "AUDIO_EXTENSIONS",
    "file_tags",
    "has_tags",
    "parse_events",
    "parse_tags",
    "tags_json",
    "tags_text",
]
