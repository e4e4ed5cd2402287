/* Block formats: dequantizers against hand-computed blocks, fp16/bf16
   conversions, quantizer round trips and error bounds. */
#include "q4k.h"
#include "t.h"

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v & 0xFF); p[1] = (uint8_t)(v >> 8); }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ---- dequantizers on hand-built blocks ---------------------------------- */

static void test_dequant_q4_0(void) {
    uint8_t b[18] = {0};
    float y[32];
    int i;
    put16(b, 0x3800); /* d = 0.5 */
    b[2 + 0] = 0x1F;  /* y[0] = (15-8)/2, y[16] = (1-8)/2 */
    b[2 + 15] = 0x80; /* y[15] = (0-8)/2, y[31] = 0 */
    b[2 + 7] = 0x9C;  /* y[7] = (12-8)/2, y[23] = (9-8)/2 */
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_0, b, y, 32) == Q4K_OK, "status");
    T_CHECK(y[0] == 3.5f && y[16] == -3.5f, "%g %g", y[0], y[16]);
    T_CHECK(y[15] == -4.0f && y[31] == 0.0f, "%g %g", y[15], y[31]);
    T_CHECK(y[7] == 2.0f && y[23] == 0.5f, "%g %g", y[7], y[23]);
    for (i = 0; i < 32; i++)
        if (i != 0 && i != 16 && i != 15 && i != 31 && i != 7 && i != 23) T_CHECK(y[i] == -4.0f, "y[%d] = %g", i, y[i]);
}

static void test_dequant_q5_0(void) {
    uint8_t b[22] = {0};
    float y[32];
    int i;
    put16(b, 0x3400);   /* d = 0.25 */
    b[2] = 0x01;        /* qh bit 0 */
    b[4] = 0x02;        /* qh bit 17 */
    b[5] = 0x80;        /* qh bit 31 */
    b[6 + 0] = 0x3F;    /* y[0] = (15|16)-16 = 15, y[16] = 3-16 */
    b[6 + 1] = 0x21;    /* y[1] = 1-16, y[17] = (2|16)-16 = 2 */
    b[6 + 15] = 0xF0;   /* y[15] = -16, y[31] = (15|16)-16 = 15 */
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q5_0, b, y, 32) == Q4K_OK, "status");
    T_CHECK(y[0] == 3.75f && y[16] == -3.25f, "%g %g", y[0], y[16]);
    T_CHECK(y[1] == -3.75f && y[17] == 0.5f, "%g %g", y[1], y[17]);
    T_CHECK(y[15] == -4.0f && y[31] == 3.75f, "%g %g", y[15], y[31]);
    for (i = 2; i < 15; i++) T_CHECK(y[i] == -4.0f && y[i + 16] == -4.0f, "y[%d] = %g", i, y[i]);
}

static void test_dequant_q8_0(void) {
    uint8_t b[2 * 34] = {0};
    float y[64];
    put16(b, 0x4000);       /* block 0: d = 2 */
    b[2] = 0x80;            /* -128 */
    b[3] = 0x7F;            /* 127 */
    b[33] = 0xFF;           /* -1 */
    put16(b + 34, 0xB400);  /* block 1: d = -0.25 */
    b[34 + 2] = 0x05;
    b[34 + 33] = 0x80;
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q8_0, b, y, 64) == Q4K_OK, "status");
    T_CHECK(y[0] == -256.0f && y[1] == 254.0f && y[2] == 0.0f && y[31] == -2.0f, "%g %g %g %g", y[0], y[1], y[2], y[31]);
    T_CHECK(y[32] == -1.25f && y[63] == 32.0f && y[40] == 0.0f, "%g %g %g", y[32], y[63], y[40]);
}

/* scales and mins chosen so that every 6-bit value uses both of its top
   bits somewhere and the j >= 4 half needs the spare bits of bytes 0-7 */
static const int k_sc[8] = {1, 2, 3, 4, 33, 45, 60, 63};
static const int k_m[8] = {5, 6, 7, 8, 50, 17, 36, 62};
/* the same, packed by hand (see the comment in the test) */
static const uint8_t k_scales[12] = {0x81, 0x82, 0xC3, 0xC4, 0xC5, 0x46, 0x87, 0xC8, 0x21, 0x1D, 0x4C, 0xEF};

static void test_dequant_q4_K(void) {
    /* s0..3 = sc0..3 | top2(sc4..7) << 6: 1|2<<6, 2|2<<6, 3|3<<6, 4|3<<6
       s4..7 = m0..3  | top2(m4..7) << 6:  5|3<<6, 6|1<<6, 7|2<<6, 8|3<<6
       s8..11 = low4(sc4..7) | low4(m4..7) << 4: 1|2<<4, 13|1<<4, 12|4<<4, 15|14<<4 */
    uint8_t b[144] = {0};
    float y[256];
    int s, l, bad = 0;
    put16(b, 0x3400);     /* d = 0.25 */
    put16(b + 2, 0x3800); /* dmin = 0.5 */
    memcpy(b + 4, k_scales, 12);
    for (l = 0; l < 128; l++) b[16 + l] = (uint8_t)((l % 16) | (15 - (l * 7) % 16) << 4);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_K, b, y, 256) == Q4K_OK, "status");
    for (s = 0; s < 8; s++)
        for (l = 0; l < 32; l++) {
            int byte = 32 * (s / 2) + l;
            int q = (s % 2 == 0) ? byte % 16 : 15 - (byte * 7) % 16;
            float want = 0.25f * (float)k_sc[s] * (float)q - 0.5f * (float)k_m[s];
            if (y[32 * s + l] != want && bad++ < 5)
                T_CHECK(0, "sub-block %d value %d: got %g want %g", s, l, y[32 * s + l], want);
        }
    T_CHECK(bad == 0, "%d values wrong", bad);
    /* two literal values: sub-block 5 (sc 45, m 17), high nibble of byte 64+3 */
    T_CHECK(y[5 * 32 + 3] == 0.25f * 45 * (15 - (67 * 7) % 16) - 8.5f, "%g", y[5 * 32 + 3]);
    T_CHECK(y[0] == -2.5f, "sub-block 0 value 0: %g", y[0]);
}

static void test_dequant_q5_K(void) {
    uint8_t b[176] = {0};
    float y[256];
    int s, l, bad = 0;
    put16(b, 0xB400);     /* d = -0.25 */
    put16(b + 2, 0x3C00); /* dmin = 1 */
    memcpy(b + 4, k_scales, 12);
    for (l = 0; l < 32; l++) b[16 + l] = (uint8_t)(((l * 37) >> 2) & 0xFF);
    for (l = 0; l < 128; l++) b[48 + l] = (uint8_t)((l * 5 + 3) % 16 | ((l * 11) % 16) << 4);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q5_K, b, y, 256) == Q4K_OK, "status");
    for (s = 0; s < 8; s++)
        for (l = 0; l < 32; l++) {
            int byte = 32 * (s / 2) + l;
            int q = (s % 2 == 0) ? (byte * 5 + 3) % 16 : (byte * 11) % 16;
            int hbit = ((((l * 37) >> 2) & 0xFF) >> s) & 1;
            float want = -0.25f * (float)k_sc[s] * (float)(q + 16 * hbit) - 1.0f * (float)k_m[s];
            if (y[32 * s + l] != want && bad++ < 5)
                T_CHECK(0, "sub-block %d value %d: got %g want %g", s, l, y[32 * s + l], want);
        }
    T_CHECK(bad == 0, "%d values wrong", bad);
    /* sub-block 7, value 31: qh[31] = (31*37)>>2 = 286 -> 0x1E, bit 7 = 0;
       q = high nibble of byte 127 = (127*11)%16 = 5; sc 63, m 62 */
    T_CHECK(y[255] == -0.25f * 63 * 5 - 62.0f, "%g", y[255]);
}

static void test_dequant_q6_K(void) {
    /* layout: ql[128] qh[64] scales[16] d; all quants zero (q = -32) except: */
    uint8_t b[210] = {0};
    float y[256], want[256];
    int i, bad = 0;
    for (i = 0; i < 16; i++) b[192 + i] = (uint8_t)(int8_t)(2 * i - 15);
    put16(b + 208, 0x3800); /* d = 0.5 */
    for (i = 0; i < 256; i++) want[i] = 0.5f * (float)(2 * (i / 16) - 15) * -32.0f;
    b[0] = 0x5A; b[128 + 0] = 0xE4;        /* qh bits 0-1 = 0, 2-3 = 1, 4-5 = 2, 6-7 = 3 */
    want[0] = 0.5f * -15 * (10 - 32);      /* low nibble of ql[0], qh bits 0-1 */
    want[32] = 0.5f * -11 * (16 - 32);     /* low nibble of ql[32] (0), qh bits 2-3 */
    want[64] = 0.5f * -7 * (5 + 32 - 32);  /* high nibble of ql[0], qh bits 4-5 */
    want[96] = 0.5f * -3 * (48 - 32);      /* high nibble of ql[32], qh bits 6-7 */
    b[49] = 0xC3;                          /* ql[32+17]: values 49 and 113 */
    want[49] = 0.5f * -9 * (3 - 32);
    want[113] = 0.5f * -1 * (12 - 32);
    b[69] = 0xF0; b[128 + 37] = 0x1B;      /* second half, l = 5; qh = 3,2,1,0 */
    want[133] = 0.5f * 1 * (48 - 32);
    want[165] = 0.5f * 5 * (32 - 32);
    want[197] = 0.5f * 9 * (31 - 32);
    want[229] = 0.5f * 13 * (0 - 32);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q6_K, b, y, 256) == Q4K_OK, "status");
    for (i = 0; i < 256; i++)
        if (!same_bits(y[i], want[i]) && bad++ < 5) T_CHECK(0, "value %d: got %g want %g", i, y[i], want[i]);
    T_CHECK(bad == 0, "%d values wrong", bad);
}

static void test_dequant_float_types(void) {
    uint8_t h[10], bf[4], f[8];
    float y[5], one = 1.0f, m = -0.375f;
    put16(h, 0x3C00); put16(h + 2, 0xC000); put16(h + 4, 0x0001); put16(h + 6, 0x7BFF); put16(h + 8, 0xFC00);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_F16, h, y, 5) == Q4K_OK, "status");
    T_CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == ldexpf(1.0f, -24) && y[3] == 65504.0f && isinf(y[4]) && y[4] < 0,
            "%g %g %g %g %g", y[0], y[1], y[2], y[3], y[4]);
    put16(bf, 0x3F80); put16(bf + 2, 0xC040);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_BF16, bf, y, 2) == Q4K_OK, "status");
    T_CHECK(y[0] == 1.0f && y[1] == -3.0f, "%g %g", y[0], y[1]);
    memcpy(f, &one, 4); memcpy(f + 4, &m, 4);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_F32, f, y, 2) == Q4K_OK, "status");
    T_CHECK(y[0] == 1.0f && y[1] == -0.375f, "%g %g", y[0], y[1]);
}

/* a row of several blocks is the blocks one after another, for every type */
static void test_dequant_rows(void) {
    static const q4k_type types[] = {Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_Q4_0, Q4K_TYPE_Q5_0, Q4K_TYPE_Q8_0,
                                     Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};
    uint8_t buf[4 * 210];
    float row[4 * 256], one[256];
    t_rng r = {0x1234567ULL};
    size_t t;
    for (t = 0; t < sizeof types / sizeof types[0]; t++) {
        q4k_type_info ti = q4k_type_traits(types[t]);
        int64_t bs = ti.block_size == 1 ? 64 : ti.block_size, k, i;
        size_t i2;
        for (i2 = 0; i2 < sizeof buf; i2++) buf[i2] = (uint8_t)t_rng_next(&r);
        if (ti.block_size > 1) /* finite scales: fp16 d in [-2, 2] where the type keeps them */
            for (k = 0; k < 4; k++) {
                uint8_t *blk = buf + (size_t)k * ti.type_size;
                uint16_t d = (uint16_t)(0x2000 + t_rng_next(&r) % 0x1C00) | (uint16_t)((t_rng_next(&r) & 1) << 15);
                if (types[t] == Q4K_TYPE_Q6_K) put16(blk + 208, d);
                else put16(blk, d);
                if (types[t] == Q4K_TYPE_Q4_K || types[t] == Q4K_TYPE_Q5_K) put16(blk + 2, (uint16_t)(d ^ 0x0155));
            }
        T_CHECK(q4k_dequantize_row(types[t], buf, row, 4 * bs) == Q4K_OK, "%s row", ti.name);
        for (k = 0; k < 4; k++) {
            T_CHECK(q4k_dequantize_row(types[t], buf + q4k_row_size(types[t], k * bs), one, bs) == Q4K_OK, "block");
            for (i = 0; i < bs; i++)
                T_CHECK(same_bits(one[i], row[k * bs + i]), "%s block %d value %d", ti.name, (int)k, (int)i);
        }
        if (ti.block_size > 1)
            for (i = 0; i < 4 * bs; i++) T_CHECK(!isnan(row[i]), "%s value %d is NaN", ti.name, (int)i);
    }
}

static void test_dequant_errors(void) {
    uint8_t b[512] = {0};
    float y[512];
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_0, b, y, 31) == Q4K_ERR_INVALID_ARG, "n = 31");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q8_0, b, y, -32) == Q4K_ERR_INVALID_ARG, "n < 0");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_K, b, y, 128) == Q4K_ERR_INVALID_ARG, "n = 128");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q6_K, b, y, 288) == Q4K_ERR_INVALID_ARG, "n = 288");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_1, b, y, 32) == Q4K_ERR_UNSUPPORTED_TYPE, "Q4_1");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q2_K, b, y, 256) == Q4K_ERR_UNSUPPORTED_TYPE, "Q2_K");
    T_CHECK(q4k_dequantize_row((q4k_type)99, b, y, 32) == Q4K_ERR_UNSUPPORTED_TYPE, "99");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_0, NULL, y, 32) == Q4K_ERR_INVALID_ARG, "NULL src");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_0, b, y, 0) == Q4K_OK, "n = 0");
}

/* ---- fp16 / bf16 conversions -------------------------------------------- */

/* value of a finite half computed from its definition, not by bit moving */
static double half_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return (h & 0x8000) ? -v : v;
}

static void test_fp16_exhaustive(void) {
    uint32_t h;
    int bad_val = 0, bad_rt = 0;
    for (h = 0; h < 65536; h++) {
        float f = q4k_fp16_to_fp32((uint16_t)h);
        int e = (h >> 10) & 31;
        if (e == 31) {
            if (h & 1023) {
                uint16_t back = q4k_fp32_to_fp16(f);
                T_CHECK(isnan(f) && !signbit(f) == !(h & 0x8000), "%04x -> %g", (unsigned)h, f);
                T_CHECK((back & 0x7C00) == 0x7C00 && (back & 1023) && (back & 0x8000) == (h & 0x8000),
                        "NaN %04x -> %04x", (unsigned)h, back);
            } else {
                T_CHECK(isinf(f) && (f < 0) == ((h & 0x8000) != 0), "%04x -> %g", (unsigned)h, f);
                T_CHECK(q4k_fp32_to_fp16(f) == h, "inf round trip %04x", (unsigned)h);
            }
            continue;
        }
        if ((double)f != half_value((uint16_t)h) || !signbit(f) != !signbit(half_value((uint16_t)h))) bad_val++;
        if (q4k_fp32_to_fp16(f) != h) bad_rt++;
    }
    T_CHECK(bad_val == 0, "%d halves convert to the wrong float", bad_val);
    T_CHECK(bad_rt == 0, "%d halves do not survive the round trip", bad_rt);
}

/* Every rounding decision of float -> half: for each pair of neighbouring
   finite halves (and 65504 with the next step, 65536, which is inf) the exact
   midpoint is a float; it must go to the even one of the two, and the floats
   just below and above it to the lower and upper one. */
static void test_fp16_rounding(void) {
    uint32_t h;
    int bad = 0;
    for (h = 0; h < 0x7C00; h++) {
        double lo = half_value((uint16_t)h), hi = h == 0x7BFF ? 65536.0 : half_value((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2), below = nextafterf(mid, 0.0f), above = nextafterf(mid, INFINITY);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        int sgn;
        T_CHECK((double)mid == (lo + hi) / 2, "midpoint above %04x not exact", (unsigned)h);
        for (sgn = 0; sgn < 2; sgn++) {
            uint16_t s = sgn ? 0x8000 : 0;
            float m = sgn ? -mid : mid, b = sgn ? -below : below, a = sgn ? -above : above;
            if (q4k_fp32_to_fp16(m) != (even | s) || q4k_fp32_to_fp16(b) != (h | s) ||
                q4k_fp32_to_fp16(a) != ((h + 1) | s)) {
                if (bad++ < 5)
                    T_CHECK(0, "around %04x: mid %04x below %04x above %04x", (unsigned)(h | s), q4k_fp32_to_fp16(m),
                            q4k_fp32_to_fp16(b), q4k_fp32_to_fp16(a));
            }
        }
    }
    T_CHECK(bad == 0, "%d rounding decisions wrong", bad);
    /* named cases */
    T_CHECK(q4k_fp32_to_fp16(65504.0f) == 0x7BFF, "65504");
    T_CHECK(q4k_fp32_to_fp16(65519.99f) == 0x7BFF, "65519.99");
    T_CHECK(q4k_fp32_to_fp16(65520.0f) == 0x7C00, "65520 -> inf");
    T_CHECK(q4k_fp32_to_fp16(-65520.0f) == 0xFC00, "-65520 -> -inf");
    T_CHECK(q4k_fp32_to_fp16(1e10f) == 0x7C00, "1e10");
    T_CHECK(q4k_fp32_to_fp16(1.0f + ldexpf(1, -11)) == 0x3C00, "tie 1 + 2^-11 goes to even 1");
    T_CHECK(q4k_fp32_to_fp16(1.0f + 3 * ldexpf(1, -11)) == 0x3C02, "tie 1 + 3*2^-11 goes to even");
    T_CHECK(q4k_fp32_to_fp16(ldexpf(1, -24)) == 0x0001, "smallest subnormal");
    T_CHECK(q4k_fp32_to_fp16(ldexpf(1, -25)) == 0x0000, "2^-25 ties to 0");
    T_CHECK(q4k_fp32_to_fp16(nextafterf(ldexpf(1, -25), 1)) == 0x0001, "just above 2^-25");
    T_CHECK(q4k_fp32_to_fp16(3 * ldexpf(1, -25)) == 0x0002, "1.5 * 2^-24 ties to 2");
    T_CHECK(q4k_fp32_to_fp16(ldexpf(1, -14) - ldexpf(1, -25)) == 0x0400, "largest subnormal tie to min normal");
    T_CHECK(q4k_fp32_to_fp16(1e-30f) == 0x0000 && q4k_fp32_to_fp16(-1e-30f) == 0x8000, "underflow keeps sign");
    T_CHECK(q4k_fp32_to_fp16(-0.0f) == 0x8000, "-0");
    T_CHECK(q4k_fp32_to_fp16(ldexpf(1, -149)) == 0x0000, "float subnormal");
    T_CHECK((q4k_fp32_to_fp16(NAN) & 0x7FFF) > 0x7C00, "NaN stays NaN");
    T_CHECK(q4k_fp16_to_fp32(0x03FF) == ldexpf(1023, -24), "largest subnormal half");
}

static void test_bf16(void) {
    uint32_t h;
    int bad = 0;
    for (h = 0; h < 65536; h++) {
        float f = q4k_bf16_to_fp32((uint16_t)h);
        uint32_t bits;
        memcpy(&bits, &f, 4);
        if (bits != h << 16) bad++;
        if ((h & 0x7F80) == 0x7F80 && (h & 0x7F)) { /* NaN: stays NaN, sign kept */
            uint16_t back = q4k_fp32_to_bf16(f);
            if ((back & 0x7F80) != 0x7F80 || !(back & 0x7F) || (back & 0x8000) != (h & 0x8000)) bad++;
            continue;
        }
        if (q4k_fp32_to_bf16(f) != h) bad++;
        if ((h & 0x7FFF) < 0x7F80) { /* ties to even at the exact midpoint, neighbours to the nearer */
            uint32_t mid = h << 16 | 0x8000, up = mid + 1, down = mid - 1;
            float fm, fu, fd;
            uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            memcpy(&fm, &mid, 4); memcpy(&fu, &up, 4); memcpy(&fd, &down, 4);
            if (q4k_fp32_to_bf16(fm) != even || q4k_fp32_to_bf16(fu) != (uint16_t)(h + 1) || q4k_fp32_to_bf16(fd) != h)
                if (bad++ < 5) T_CHECK(0, "rounding around %04x", (unsigned)h);
        }
    }
    T_CHECK(bad == 0, "%d bf16 cases wrong", bad);
    T_CHECK(q4k_fp32_to_bf16(3.0e38f) == 0x7F62 && q4k_fp32_to_bf16(3.4e38f) == 0x7F80, "%04x %04x",
            q4k_fp32_to_bf16(3.0e38f), q4k_fp32_to_bf16(3.4e38f));
}

/* ---- quantizers --------------------------------------------------------- */

static const q4k_type k_quant_types[] = {Q4K_TYPE_Q8_0, Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q6_K,
                                         Q4K_TYPE_Q5_K};
#define N_QUANT_TYPES ((int)(sizeof k_quant_types / sizeof k_quant_types[0]))

static double rmse(const float *a, const float *b, int64_t n) {
    double s = 0;
    int64_t i;
    for (i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

/* naive baselines the k-quant searches must beat, with exact float
   parameters: asymmetric min/max grid of 16 levels per 32 (Q4_K's shape)
   and a symmetric absmax grid of 64 levels per 16 (Q6_K's shape) */
static double naive_minmax4_rmse(const float *x, int64_t n) {
    double s = 0;
    int64_t b;
    int i;
    for (b = 0; b < n; b += 32) {
        float lo = x[b], hi = x[b], step;
        for (i = 1; i < 32; i++) { lo = x[b + i] < lo ? x[b + i] : lo; hi = x[b + i] > hi ? x[b + i] : hi; }
        step = (hi - lo) / 15;
        for (i = 0; i < 32; i++) {
            float v = step > 0 ? lo + roundf((x[b + i] - lo) / step) * step : lo;
            s += ((double)v - x[b + i]) * ((double)v - x[b + i]);
        }
    }
    return sqrt(s / (double)n);
}

static double naive_absmax6_rmse(const float *x, int64_t n) {
    double s = 0;
    int64_t b;
    int i;
    for (b = 0; b < n; b += 16) {
        float mx = 0, d;
        for (i = 0; i < 16; i++) mx = fabsf(x[b + i]) > fabsf(mx) ? x[b + i] : mx;
        d = mx / -32;
        for (i = 0; i < 16; i++) {
            float l = d != 0 ? roundf(x[b + i] / d) : 0, v;
            l = l > 31 ? 31 : l < -32 ? -32 : l;
            v = l * d;
            s += ((double)v - x[b + i]) * ((double)v - x[b + i]);
        }
    }
    return sqrt(s / (double)n);
}

/* RMSE bounds on N(0,1) data. Expected extremes of a block of Gaussians
   (numerically: E max|x| over 32 = 2.347, over 16 = 2.075, E(max-min) over
   32 = 4.139). A uniform quantizer of step D has RMSE D/sqrt(12):
     Q8_0  D = 2.347/127 = 0.01848 -> 0.00534
     Q5_0  D = 2.347/16  = 0.1467  -> 0.04235
     Q4_0  D = 2.347/8   = 0.2934  -> 0.0847
     Q4_K  D = 4.139/15  = 0.2760  -> 0.0797 (a plain min/max grid; the
           fitted scale/min must do better, less what 6-bit scales and mins
           against the super-block maximum cost)
     Q6_K  D = 2.075/32  = 0.06484 -> 0.01872
     Q5_K  D = 4.139/31  = 0.1335  -> 0.03855 (as Q4_K, with 32 levels)
   The bound is that figure plus 10% (Q8_0/Q5_0/Q4_0: the fp16 scale, the
   clamp at the one-sided end +8/+16/+128 and E[D^2] > E[D]^2) or 5% (Q4_K,
   Q6_K, which search for better scales). */
static const double k_rmse_bound[N_QUANT_TYPES] = {
    1.10 * 0.01848 / 3.4641, 1.10 * 0.1467 / 3.4641, 1.10 * 0.2934 / 3.4641, 1.05 * 0.2760 / 3.4641,
    1.05 * 0.06484 / 3.4641, 1.05 * 0.1335 / 3.4641};

static void test_quant_rmse(void) {
    int64_t n = t_quick() ? 256 * 256 : 256 * 2048;
    float *x = (float *)malloc((size_t)n * sizeof(float)), *y = (float *)malloc((size_t)n * sizeof(float));
    uint8_t *q = (uint8_t *)malloc((size_t)n * sizeof(float));
    t_rng r = {0x9E3779B97F4A7C15ULL};
    double e[N_QUANT_TYPES], naive4, naive6;
    int64_t i;
    int t;
    for (i = 0; i < n; i++) x[i] = (float)t_rng_gauss(&r);
    for (t = 0; t < N_QUANT_TYPES; t++) {
        size_t bytes = q4k_quantize_row(k_quant_types[t], x, q, n);
        T_CHECK(bytes == q4k_row_size(k_quant_types[t], n), "%s wrote %zu bytes", q4k_type_name(k_quant_types[t]), bytes);
        T_CHECK(q4k_dequantize_row(k_quant_types[t], q, y, n) == Q4K_OK, "dequantize");
        e[t] = rmse(x, y, n);
        printf("  %-5s rmse %.5f (bound %.5f)\n", q4k_type_name(k_quant_types[t]), e[t], k_rmse_bound[t]);
        T_CHECK(e[t] < k_rmse_bound[t], "%s rmse %.5f over the bound %.5f", q4k_type_name(k_quant_types[t]), e[t],
                k_rmse_bound[t]);
    }
    naive4 = naive_minmax4_rmse(x, n);
    naive6 = naive_absmax6_rmse(x, n);
    printf("  naive min/max 4-bit/32 rmse %.5f, naive absmax 6-bit/16 rmse %.5f\n", naive4, naive6);
    /* measured: Q4_K 0.914 x naive, Q6_K 0.949 x naive */
    T_CHECK(e[3] < 0.95 * naive4, "Q4_K %.5f does not beat the naive grid %.5f by 5%%", e[3], naive4);
    T_CHECK(e[4] < 0.98 * naive6, "Q6_K %.5f does not beat the naive grid %.5f by 2%%", e[4], naive6);
    /* more bits, less error */
    T_CHECK(e[0] < e[4] && e[4] < e[5] && e[5] < e[1] && e[1] < e[3] && e[3] < e[2], "ordering");
    free(x);
    free(y);
    free(q);
}

/* per-value error of the legacy types: |x - y| <= |d| / 2 (Q8_0) or |d|
   (Q4_0/Q5_0: the far end of the one-sided range is clamped), plus what the
   fp16 rounding of d moves the largest level (2^-11 relative) */
static void test_quant_max_error(void) {
    static const q4k_type types[] = {Q4K_TYPE_Q8_0, Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_0};
    static const double half_steps[] = {0.5, 1.0, 1.0}, levels[] = {127, 16, 8};
    float x[32 * 64], y[32 * 64];
    uint8_t q[34 * 64];
    t_rng r = {77};
    int t, b, i, bad = 0;
    for (i = 0; i < 32 * 64; i++) x[i] = (float)(t_rng_gauss(&r) * exp(4 * t_rng_unif(&r) - 2));
    for (t = 0; t < 3; t++) {
        size_t bs = q4k_type_traits(types[t]).type_size;
        q4k_quantize_row(types[t], x, q, 32 * 64);
        q4k_dequantize_row(types[t], q, y, 32 * 64);
        for (b = 0; b < 64; b++) {
            float d = fabsf(q4k_fp16_to_fp32((uint16_t)(q[b * bs] | q[b * bs + 1] << 8)));
            double lim = d * (half_steps[t] + levels[t] * ldexp(1, -11)) * 1.0001;
            for (i = 0; i < 32; i++)
                if (fabs((double)x[32 * b + i] - y[32 * b + i]) > lim && bad++ < 5)
                    T_CHECK(0, "%s block %d value %d: x %g y %g d %g", q4k_type_name(types[t]), b, i, x[32 * b + i],
                            y[32 * b + i], d);
        }
    }
    T_CHECK(bad == 0, "%d values over the bound", bad);
}

static void test_quant_zero_and_constant(void) {
    /* magnitudes that keep the super-block scales fp16 normals (Q6_K's d is
       about |c|/4096, so |c| >= 0.25): below that the format itself is
       coarser than the 2^-9 relative tolerance */
    static const float consts[] = {0.0f, 0.7f, -0.7f, 0.3f, -1234.5f};
    float x[256], y[256];
    uint8_t q[256 * 4];
    int t, c, i;
    for (t = 0; t < N_QUANT_TYPES; t++)
        for (c = 0; c < 5; c++) {
            q4k_type ty = k_quant_types[t];
            double tol = fabs(consts[c]) * ldexp(1, -9);
            for (i = 0; i < 256; i++) x[i] = consts[c];
            T_CHECK(q4k_quantize_row(ty, x, q, 256) == q4k_row_size(ty, 256), "size");
            q4k_dequantize_row(ty, q, y, 256);
            for (i = 0; i < 256; i++)
                if (fabs((double)y[i] - consts[c]) > tol) {
                    T_CHECK(0, "%s constant %g: value %d is %g", q4k_type_name(ty), consts[c], i, y[i]);
                    break;
                }
            if (c == 0) { /* all zero: every scale is zero (the sign of Q4_0/Q5_0's d aside) */
                size_t k, bytes = q4k_row_size(ty, 256), nz = 0;
                for (k = 0; k < bytes; k++) nz += q[k] != 0;
                for (i = 0; i < 256; i++) T_CHECK(y[i] == 0.0f, "%s zero block value %d = %g", q4k_type_name(ty), i, y[i]);
                if (ty == Q4K_TYPE_Q8_0 || ty == Q4K_TYPE_Q4_K || ty == Q4K_TYPE_Q6_K)
                    T_CHECK(nz == 0, "%s: %zu non-zero bytes for a zero block", q4k_type_name(ty), nz);
            }
        }
}

/* exact bytes for hand-chosen blocks: scale sign conventions and ties */
static void test_quant_legacy_bytes(void) {
    float x[32];
    uint8_t q[34];
    int i;
    /* Q8_0: largest |x| 127 gives d = 1; ties round away from zero */
    for (i = 0; i < 32; i++) x[i] = 0;
    x[0] = 127; x[1] = 2.5f; x[2] = -2.5f; x[3] = 0.5f; x[4] = -0.5f; x[5] = 1.49f; x[6] = -126.5f;
    q4k_quantize_row(Q4K_TYPE_Q8_0, x, q, 32);
    T_CHECK(q[0] == 0x00 && q[1] == 0x3C, "d %02x%02x", q[1], q[0]);
    T_CHECK((int8_t)q[2] == 127 && (int8_t)q[3] == 3 && (int8_t)q[4] == -3 && (int8_t)q[5] == 1 && (int8_t)q[6] == -1 &&
                (int8_t)q[7] == 1 && (int8_t)q[8] == -127,
            "%d %d %d %d %d %d %d", (int8_t)q[2], (int8_t)q[3], (int8_t)q[4], (int8_t)q[5], (int8_t)q[6], (int8_t)q[7],
            (int8_t)q[8]);
    /* Q4_0: the signed extreme -8 gives d = 1 (positive); trunc(v + 8.5)
       rounds halves up; +8 clamps to 7 */
    for (i = 0; i < 32; i++) x[i] = 0;
    x[0] = -8; x[1] = 0.5f; x[2] = -0.5f; x[3] = -1.5f; x[4] = 7.9f; x[16] = 8; x[17] = -7.5f;
    q4k_quantize_row(Q4K_TYPE_Q4_0, x, q, 32);
    T_CHECK(q[0] == 0x00 && q[1] == 0x3C, "d %02x%02x", q[1], q[0]);
    T_CHECK(q[2] == (0 | 15 << 4) && q[3] == (9 | 1 << 4) && q[4] == (8 | 8 << 4) && q[5] == (7 | 8 << 4) &&
                q[6] == (15 | 8 << 4),
            "%02x %02x %02x %02x %02x", q[2], q[3], q[4], q[5], q[6]);
    /* a positive extreme gives a negative d: the extreme lands on -8 */
    x[0] = 8; x[16] = 0;
    q4k_quantize_row(Q4K_TYPE_Q4_0, x, q, 32);
    T_CHECK(q[0] == 0x00 && q[1] == 0xBC && (q[2] & 0xF) == 0, "d %02x%02x q %02x", q[1], q[0], q[2]);
    /* Q5_0: d = -16/-16 = 1; fifth bits in qh */
    for (i = 0; i < 32; i++) x[i] = 0;
    x[0] = -16; x[1] = 15.7f; x[2] = -0.5f; x[20] = 0.5f; x[31] = 3;
    q4k_quantize_row(Q4K_TYPE_Q5_0, x, q, 32);
    T_CHECK(q[0] == 0x00 && q[1] == 0x3C, "d %02x%02x", q[1], q[0]);
    {
        uint32_t qh = (uint32_t)q[2] | (uint32_t)q[3] << 8 | (uint32_t)q[4] << 16 | (uint32_t)q[5] << 24;
        /* q: [0]=0, [1]=31, [2]=16, others 16, [20]=17, [31]=19 */
        T_CHECK(qh == (0xFFFFFFFFu & ~1u), "qh %08x", qh);
        T_CHECK(q[6] == 0x00 && q[7] == 0x0F && q[8] == 0x00 && q[6 + 4] == 0x10 && q[6 + 15] == 0x30,
                "%02x %02x %02x %02x %02x", q[6], q[7], q[8], q[10], q[21]);
    }
}

/* a row quantizes as its blocks one by one; the 8 sub-block scales and mins
   of Q4_K / Q5_K, and the 16 of Q6_K, travel through their packing: sub-blocks
   with amplitudes from 1/8 to 1 of the largest each keep a small error */
static void test_quant_rows_and_subblocks(void) {
    static const double max_rel[N_QUANT_TYPES] = {0.015, 0.10, 0.20, 0.18, 0.05, 0.09}; /* Q8_0 Q5_0 Q4_0 Q4_K Q6_K Q5_K */
    float x[256 * 3], y[256 * 3];
    uint8_t row[34 * 24], one[34 * 8];
    t_rng r = {5};
    int t, k, j, i;
    for (k = 0; k < 3; k++)
        for (j = 0; j < 16; j++)
            for (i = 0; i < 16; i++)
                x[256 * k + 16 * j + i] = (float)(t_rng_gauss(&r) * ldexp(1, -(int)((j + 5 * k) % 16) / 4) + (k == 2 ? 0.3 : 0));
    for (t = 0; t < N_QUANT_TYPES; t++) {
        q4k_type ty = k_quant_types[t];
        size_t bs = q4k_row_size(ty, 256);
        T_CHECK(q4k_quantize_row(ty, x, row, 768) == 3 * bs, "size");
        for (k = 0; k < 3; k++) {
            q4k_quantize_row(ty, x + 256 * k, one, 256);
            T_CHECK(memcmp(one, row + k * bs, bs) == 0, "%s block %d differs from the row", q4k_type_name(ty), k);
        }
        q4k_dequantize_row(ty, row, y, 768);
        for (k = 0; k < 3; k++)
            for (j = 0; j < 8; j++) {
                const float *xs = x + 256 * k + 32 * j, *ys = y + 256 * k + 32 * j;
                double amp = 0, e = rmse(xs, ys, 32);
                for (i = 0; i < 32; i++) amp += (double)xs[i] * xs[i];
                amp = sqrt(amp / 32);
                /* rmse / rms amplitude: a uniform grid gives (2.35 / levels
                   per side) / sqrt(12), i.e. 0.085 for Q4_0's 8, 0.042 for 16,
                   0.005 for 127; Q4_K's small sub-blocks have scales of only
                   ~4 of 63 steps, Q6_K 16 values of 32 levels. Worst measured
                   over these 24 sub-blocks: Q4_0 0.129, Q4_K 0.109, Q5_0
                   0.058, Q6_K 0.031, Q8_0 0.009. */
                T_CHECK(e < max_rel[t] * amp, "%s block %d sub-block %d: rmse %g, rms %g", q4k_type_name(ty), k, j, e, amp);
            }
    }
}

static void test_quant_float_types(void) {
    float x[6] = {1.0f, -2.5f, 65520.0f, 1.0f + 1.0f / 2048, 3.0e-8f, 1.00390625f}, y[6];
    uint8_t q[24];
    int i;
    T_CHECK(q4k_quantize_row(Q4K_TYPE_F32, x, q, 6) == 24 && memcmp(q, x, 24) == 0, "F32 copies");
    T_CHECK(q4k_quantize_row(Q4K_TYPE_F16, x, q, 6) == 12, "F16 size");
    for (i = 0; i < 6; i++) T_CHECK((q[2 * i] | q[2 * i + 1] << 8) == q4k_fp32_to_fp16(x[i]), "F16 value %d", i);
    q4k_dequantize_row(Q4K_TYPE_F16, q, y, 6);
    T_CHECK(y[0] == 1.0f && y[1] == -2.5f && isinf(y[2]) && y[3] == 1.0f, "%g %g %g %g", y[0], y[1], y[2], y[3]);
    T_CHECK(q4k_quantize_row(Q4K_TYPE_BF16, x, q, 6) == 12, "BF16 size");
    for (i = 0; i < 6; i++) T_CHECK((q[2 * i] | q[2 * i + 1] << 8) == q4k_fp32_to_bf16(x[i]), "BF16 value %d", i);
    q4k_dequantize_row(Q4K_TYPE_BF16, q, y, 6);
    T_CHECK(y[0] == 1.0f && y[1] == -2.5f && y[5] == 1.0f, "%g %g %g", y[0], y[1], y[5]);
}

static void test_quant_errors(void) {
    float x[512] = {0};
    uint8_t q[1024];
    T_CHECK(q4k_quantize_row(Q4K_TYPE_Q4_0, x, q, 31) == 0, "n = 31");
    T_CHECK(q4k_quantize_row(Q4K_TYPE_Q4_K, x, q, 100) == 0, "n = 100");
    T_CHECK(q4k_quantize_row(Q4K_TYPE_Q6_K, x, q, -256) == 0, "n < 0");
    T_CHECK(q4k_quantize_row(Q4K_TYPE_Q3_K, x, q, 256) == 0, "Q3_K has no quantizer");
    T_CHECK(q4k_quantize_row(Q4K_TYPE_Q4_1, x, q, 32) == 0, "Q4_1");
    T_CHECK(q4k_quantize_row(Q4K_TYPE_Q8_0, NULL, q, 32) == 0, "NULL");
    T_CHECK(q4k_quantize_row(Q4K_TYPE_Q8_0, x, q, 64) == 68, "two Q8_0 blocks");
}

int main(void) {
    T_RUN(test_dequant_q4_0);
    T_RUN(test_dequant_q5_0);
    T_RUN(test_dequant_q8_0);
    T_RUN(test_dequant_q4_K);
    T_RUN(test_dequant_q5_K);
    T_RUN(test_dequant_q6_K);
    T_RUN(test_dequant_float_types);
    T_RUN(test_dequant_rows);
    T_RUN(test_dequant_errors);
    T_RUN(test_fp16_exhaustive);
    T_RUN(test_fp16_rounding);
    T_RUN(test_bf16);
    T_RUN(test_quant_rmse);
    T_RUN(test_quant_max_error);
    T_RUN(test_quant_zero_and_constant);
    T_RUN(test_quant_legacy_bytes);
    T_RUN(test_quant_rows_and_subblocks);
    T_RUN(test_quant_float_types);
    T_RUN(test_quant_errors);
    T_EXIT();
}
