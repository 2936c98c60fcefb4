// decode_d128.cu: the KV-cache attention kernel for head dims up to 128 (fp16 and bf16).
#include "sm80/decode_launch.h"

FA_DECODE_BUCKET(128)
