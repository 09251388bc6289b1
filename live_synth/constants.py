"""Fixed facts of the Spectrogram Diffusion audio/token geometry (spec §1, §2).

These never change between models: they define the frame grid that tokens, features, models and vocoders share.
"""

import math

SAMPLE_RATE = 16_000  # Hz, mono
HOP = 320  # samples per mel frame (20 ms)
FRAME_RATE = SAMPLE_RATE // HOP  # 50 frames per second
WIN_LENGTH = 640  # samples, periodic Hann
N_FFT = 1024  # window zero-padded on the right
N_MELS = 128
MEL_FMIN = 0.0
MEL_FMAX = 8000.0

SEGMENT_FRAMES = 256  # one model window: 5.12 s
SEGMENT_SAMPLES = SEGMENT_FRAMES * HOP  # 81 920
MAX_TOKENS = 2048  # notes encoder input length (INPUT_FEATURE_LENGTH)
STEPS_PER_SECOND = 100  # token time resolution (10 ms)

# Log-mel range used to scale features to the model's [-1, 1] (MelGAN training range).
LOG_MEL_MIN = math.log(1e-5)  # -11.512925..., also the value of silence
LOG_MEL_MAX = 4.0
