// decode_d64.cu: the KV-cache attention kernel for head dims up to 64 (fp16 and bf16).
#include "sm80/decode_launch.h"

FA_DECODE_BUCKET(64)
