"""`python -m caffe_fx ...` runs the caffe-fx command line."""
import sys

from .cli import main

sys.exit(main())
