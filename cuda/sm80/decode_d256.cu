// decode_d256.cu: the KV-cache attention kernel for head dims up to 256 (fp16 and bf16).
#include "sm80/decode_launch.h"

FA_DECODE_BUCKET(256)
