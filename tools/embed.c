/* embed - copies kernel sources from kernels_src/ into the q4k headers.

   usage: embed [--check] HEADER...

   In each HEADER, the lines between
       / * Q4K_EMBED_BEGIN(kernels_src/FILE) * /        (without the spaces)
   and
       / * Q4K_EMBED_END * /
   are replaced by one array of string literals, one per line of FILE:
       static const char *const q4k__embed_FILE[] = {
           "first line\n",
           ...
           0};
   (FILE's name with every character that is not a letter or digit turned
   into '_'; a second argument, Q4K_EMBED_BEGIN(kernels_src/FILE NAME), names
   the array NAME instead). One literal per line keeps C99's 4095-character
   limit for literals. q4k__join_lines() in q4k.h joins them at run time.
   FILE is relative to the directory the tool runs in (the repository root).

   With --check nothing is written: the exit status is 1 and each header
   that would change is named. Built and run by `make embed` and
   `make check-embed`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = (char *)realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "embed: out of memory\n");
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static int read_file(const char *path, buf *out) {
    FILE *f = fopen(path, "rb");
    char tmp[65536];
    size_t n;
    if (!f) return 0;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) put(out, tmp, n);
    fclose(f);
    if (!out->p) put(out, "", 0);
    return 1;
}

/* One source line as a C literal with its newline. */
static int emit_line(buf *o, const char *s, size_t n, const char *file, int lineno) {
    size_t i, start = o->len;
    char esc[8];
    puts_(o, "    \"");
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') puts_(o, "\\\\");
        else if (c == '"') puts_(o, "\\\"");
        else if (c == '\t') puts_(o, "\\t");
        else if (c == '\r') puts_(o, "\\r");
        else if (c == '?' && i + 1 < n && s[i + 1] == '?') puts_(o, "\\?"); /* no trigraphs */
        else if (c < 0x20 || c >= 0x7f) {
            snprintf(esc, sizeof esc, "\\%03o", c);
            puts_(o, esc);
        } else put(o, (const char *)&c, 1);
    }
    puts_(o, "\\n\",\n");
    if (o->len - start > 4000) {
        fprintf(stderr, "embed: %s:%d: line too long for one C99 string literal\n", file, lineno);
        return 0;
    }
    return 1;
}

/* The line [p, le) with surrounding blanks removed equals "/ * TEXT * /"
   where TEXT starts with `want`; returns TEXT's remainder after `want`. */
static const char *marker(const char *p, const char *le, const char *want, size_t *rest_len) {
    size_t wl = strlen(want);
    while (p < le && (*p == ' ' || *p == '\t')) p++;
    while (le > p && (le[-1] == '\n' || le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t')) le--;
    if (le - p < (long)(wl + 6) || memcmp(p, "/* ", 3) || memcmp(le - 3, " */", 3)) return NULL;
    if (memcmp(p + 3, want, wl)) return NULL;
    *rest_len = (size_t)(le - 3 - (p + 3 + wl));
    return p + 3 + wl;
}

/* Rewrite one header into out; 0 on error. */
static int process(const char *hpath, const buf *in, buf *out) {
    const char *p = in->p, *end = in->p + in->len;
    int lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl + 1 : end;
        size_t rl;
        const char *arg = marker(p, le, "Q4K_EMBED_BEGIN(", &rl);
        lineno++;
        put(out, p, (size_t)(le - p));
        p = le;
        if (arg) {
            char file[480], name[512];
            size_t fl, i;
            buf src = {0, 0, 0};
            const char *s, *se;
            int sl = 0, found_end = 0;
            if (rl < 2 || arg[rl - 1] != ')' || rl - 1 >= sizeof file) {
                fprintf(stderr, "embed: %s:%d: bad Q4K_EMBED_BEGIN marker\n", hpath, lineno);
                return 0;
            }
            memcpy(file, arg, rl - 1);
            file[rl - 1] = 0;
            name[0] = 0;
            {
                char *sp = strchr(file, ' ');
                if (sp) {
                    *sp = 0;
                    snprintf(name, sizeof name, "%s", sp + 1);
                }
            }
            if (!name[0]) {
                const char *base = strrchr(file, '/');
                base = base ? base + 1 : file;
                snprintf(name, sizeof name, "q4k__embed_%s", base);
                for (i = 11; name[i]; i++)
                    if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                          (name[i] >= '0' && name[i] <= '9')))
                        name[i] = '_';
            }
            if (!read_file(file, &src)) {
                fprintf(stderr, "embed: %s:%d: cannot read %s\n", hpath, lineno, file);
                return 0;
            }
            puts_(out, "static const char *const ");
            puts_(out, name);
            puts_(out, "[] = {\n");
            s = src.p;
            se = src.p + src.len;
            while (s < se) {
                const char *snl = memchr(s, '\n', (size_t)(se - s));
                fl = (size_t)((snl ? snl : se) - s);
                if (!emit_line(out, s, fl, file, ++sl)) return 0;
                s += fl + (snl ? 1 : 0);
            }
            puts_(out, "    0};\n");
            free(src.p);
            /* drop the old text up to the end marker, which is kept */
            while (p < end) {
                const char *nl2 = memchr(p, '\n', (size_t)(end - p));
                const char *le2 = nl2 ? nl2 + 1 : end;
                size_t rl2;
                lineno++;
                if (marker(p, le2, "Q4K_EMBED_END", &rl2) && rl2 == 0) {
                    put(out, p, (size_t)(le2 - p));
                    p = le2;
                    found_end = 1;
                    break;
                }
                p = le2;
            }
            if (!found_end) {
                fprintf(stderr, "embed: %s: Q4K_EMBED_BEGIN(%s) has no Q4K_EMBED_END\n", hpath, file);
                return 0;
            }
        }
    }
    return 1;
}

int main(int argc, char **argv) {
    int check = 0, i, rc = 0;
    for (i = 1; i < argc; i++) {
        buf in = {0, 0, 0}, out = {0, 0, 0};
        if (!strcmp(argv[i], "--check")) {
            check = 1;
            continue;
        }
        if (!read_file(argv[i], &in)) {
            fprintf(stderr, "embed: cannot read %s\n", argv[i]);
            return 1;
        }
        put(&out, "", 0);
        if (!process(argv[i], &in, &out)) return 1;
        if (out.len != in.len || memcmp(out.p, in.p, in.len)) {
            if (check) {
                fprintf(stderr, "embed: %s differs from kernels_src/: run 'make embed'\n", argv[i]);
                rc = 1;
            } else {
                FILE *f = fopen(argv[i], "wb");
                if (!f || fwrite(out.p, 1, out.len, f) != out.len || fclose(f)) {
                    fprintf(stderr, "embed: cannot write %s\n", argv[i]);
                    return 1;
                }
                fprintf(stderr, "embed: %s updated\n", argv[i]);
            }
        }
        free(in.p);
        free(out.p);
    }
    return rc;
}
