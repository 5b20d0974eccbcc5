# The public names of specimg: the one list. `specimg/__init__.py` loads each from this stub on first use
# (lazy_loader.attach_stub), and type checkers and IDEs read it as the package's interface.
from .audio import load_audio as load_audio
from .audio import read_table as read_table
from .config import AudioConfig as AudioConfig
from .config import RenderConfig as RenderConfig
from .config import SegmentConfig as SegmentConfig
from .config import SpectrogramConfig as SpectrogramConfig
from .config import TrainConfig as TrainConfig
from .data import SegmentDataset as SegmentDataset
from .data import file_folds as file_folds
from .datasets import fsdd_path as fsdd_path
from .exceptions import AudioError as AudioError
from .exceptions import DataError as DataError
from .exceptions import ParameterError as ParameterError
from .exceptions import SpecimgError as SpecimgError
from .exceptions import TrainingError as TrainingError
from .experiment import load_recipe as load_recipe
from .experiment import run_experiment as run_experiment
from .models import create_backbone as create_backbone
from .models import list_backbones as list_backbones
from .models import register_backbone as register_backbone
from .predict import Predictor as Predictor
from .predict import evaluate_predictions as evaluate_predictions
from .predict import export_run as export_run
from .predict import write_report as write_report
from .spectrogram import ImageCache as ImageCache
from .spectrogram import SpectrogramFrontend as SpectrogramFrontend
from .spectrogram import render_dataset as render_dataset
from .spectrogram import render_file as render_file
from .stacking import CNNStacker as CNNStacker
from .stacking import LGBMStacker as LGBMStacker
from .stacking import MultiLabelStacker as MultiLabelStacker
from .stacking import WeightedBlend as WeightedBlend
from .stacking import select_pseudo_labels as select_pseudo_labels
from .stacking import stack_runs as stack_runs
from .tasks import Task as Task
from .training import Callback as Callback
from .training import Run as Run
from .training import Trainer as Trainer
from .training import train_cv as train_cv

__version__: str
