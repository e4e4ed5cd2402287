#!/usr/bin/env python3
"""q4k's Jinja subset against jinja2 (the engine transformers uses).

Every template in tests/data/templates/ (the chat templates published with
real models; see SOURCES there) renders conversations of one to three turns,
with and without a system message, with and without add_generation_prompt,
through build/tool_chat_template and through jinja2 set up exactly as
transformers' apply_chat_template sets it up (ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks and loopcontrols, its tojson,
raise_exception and strftime_now, the date fixed). The bytes must be
identical; where jinja2 raises (raise_exception), q4k must fail with the
same message. Then small templates exercise each construct of the subset
the same way. Prints "ok NAME" / "FAIL NAME: ..." / "skip NAME: why".
"""
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOL = os.path.join(ROOT, "build", "tool_chat_template")
TEMPLATES = os.path.join(HERE, "data", "templates")
NOW = int(datetime(2024, 7, 26, 13, 5, 9, tzinfo=timezone.utc).timestamp())

try:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("skip test_chat_template_py: jinja2 is not installed (pip install jinja2)")
    sys.exit(0)


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker: {% generation %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def transformers_env():
    """The environment of transformers' chat template rendering."""
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(NOW, tz=timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = transformers_env()


def jinja_render(src, msgs, bos, eos, add_gen):
    """(text, None) or (None, error message)."""
    try:
        return ENV.from_string(src).render(messages=msgs, bos_token=bos, eos_token=eos,
                                           add_generation_prompt=add_gen), None
    except TemplateError as e:
        return None, "%s: %s" % (type(e).__name__, e)
    except Exception as e:  # noqa: BLE001 - jinja2 raises TypeError and friends too
        return None, "%s: %s" % (type(e).__name__, e)


def q4k_render(path, msgs, bos, eos, add_gen):
    args = [TOOL, path, bos, eos, "1" if add_gen else "0", str(NOW)]
    for m in msgs:
        args += [m["role"], m["content"]]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode("utf-8", "surrogateescape"), p.stderr.decode("utf-8", "replace").strip()


SYSTEM = "You are a careful assistant.\nAnswer briefly."
USERS = ["Hello!", "  What is 2+2?  \n", "Ünïcödé — 日本語 and emoji 🙂; quotes ' \" and {{ braces }} {% tags %}"]
ANSWERS = ["Hi there.", "<think>\nadding\n</think>\n\nIt is 4.  ", " Sure: 'yes' \\ \"no\" "]

# bos/eos as each family's tokenizer_config names them
TOKENS = {
    "qwen2.5-instruct.jinja": ("", "<|im_end|>"),
    "llama-3.1-instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama-3.2-instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama-2-chat.jinja": ("<s>", "</s>"),
    "mistral-7b-instruct-v0.2.jinja": ("<s>", "</s>"),
    "mistral-7b-instruct-system.jinja": ("<s>", "</s>"),
    "deepseek-r1-distill-qwen.jinja": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"),
}


def conversations():
    for turns in (1, 2, 3):
        for with_system in (False, True):
            msgs = [{"role": "system", "content": SYSTEM}] if with_system else []
            for t in range(turns):
                msgs.append({"role": "user", "content": USERS[t]})
                if t + 1 < turns:
                    msgs.append({"role": "assistant", "content": ANSWERS[t]})
            yield "%d turn%s%s" % (turns, "s" if turns > 1 else "", ", system" if with_system else ""), msgs
    # a conversation that ends with the assistant's answer
    yield "ends with an answer", [{"role": "user", "content": USERS[0]}, {"role": "assistant", "content": ANSWERS[1]}]


def check_template(path):
    name = os.path.basename(path)
    src = open(path, encoding="utf-8").read()
    bos, eos = TOKENS.get(name, ("<s>", "</s>"))
    n = 0
    fails = []
    for label, msgs in conversations():
        for add_gen in (False, True):
            want, want_err = jinja_render(src, msgs, bos, eos, add_gen)
            rc, got, err = q4k_render(path, msgs, bos, eos, add_gen)
            n += 1
            what = "%s, add_generation_prompt=%s" % (label, add_gen)
            if want_err is not None:
                # raise_exception: the same message; q4k names it
                if rc != 3 or want_err.split(": ", 1)[-1] not in err:
                    fails.append("%s: jinja2 raised %r; q4k rc %d, %r" % (what, want_err, rc, err))
            elif rc != 0:
                fails.append("%s: q4k failed (rc %d): %s" % (what, rc, err))
            elif got != want:
                i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
                fails.append("%s: differs at byte %d: jinja2 %r, q4k %r" % (what, i, want[max(0, i - 30):i + 30],
                                                                            got[max(0, i - 30):i + 30]))
    test = "template_" + name.replace(".jinja", "").replace(".", "_").replace("-", "_")
    if fails:
        print("FAIL %s: %d of %d renders differ" % (test, len(fails), n))
        for f in fails[:5]:
            print("  " + f)
        return False
    print("ok %s (%d renders byte-identical)" % (test, n))
    return True


# Small templates, one construct each (rendered with the conversation below).
SNIPPETS = [
    "{{ messages[0]['content'] }}|{{ messages[0].role }}|{{ messages[-1].content }}",
    "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }}"
    "/{{ loop.revindex }}/{{ loop.revindex0 }};{% endfor %}",
    "{% for m in messages if m.role != 'system' %}{{ m.role }}{{ loop.index }} {% endfor %}",
    "{% for m in [] %}x{% else %}empty{% endfor %}",
    "{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}",
    "{% for m in messages %}{% if m.role == 'user' %}{% continue %}{% endif %}{{ m.role }},{% endfor %}",
    "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
    "{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.n }} {{ ns.s }}",
    "{% set x = 1 %}{% for m in messages %}{% set x = x + 10 %}{{ x }},{% endfor %}{{ x }}",
    "{% if x is defined %}d{% elif y is not defined %}nd{% else %}e{% endif %}",
    "{{ none is none }} {{ 'a' is string }} {{ 1 is number }} {{ 1 is string }} {{ messages is iterable }}"
    " {{ messages[0] is mapping }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby(3) }} {{ 'a' is lower }}",
    "{{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 'role' in messages[0] }} {{ 2 in [1, 2] }} {{ 'q' in undefined_x }}",
    "{{ 1 + 2 * 3 - 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1.5 + 1 }} {{ 10 / 4 }}",
    "{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] + [2, 3] }} {{ 'x' + 'y' }}",
    "{{ 1 < 2 }} {{ 'b' > 'a' }} {{ 2 <= 2 }} {{ 3 >= 4 }} {{ 1 == 1.0 }} {{ 'a' != 'a' }} {{ true and 0 }} {{ 0 or 'z' }}",
    "{{ not 1 == 2 }} {{ not x is defined }} {{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'y' if 0 }}]",
    "{{ 'hello world'[1:4] }} {{ 'hello'[-1] }} {{ 'hello'[::-1] }} {{ [1,2,3,4][1:] }} {{ [1,2,3,4][:-1] }}"
    " {{ [1,2,3,4][::2] }} {{ 'héllo'[1] }} {{ 'héllo'[1:3] }}",
    "[{{ '  a b  '.strip() }}][{{ '  a b  '.lstrip() }}][{{ '  a b  '.rstrip() }}][{{ 'xxaxx'.strip('x') }}]",
    "{{ 'a,b,,c'.split(',') }} {{ ' a  b \\n c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a</think>b</think>c'.split('</think>')[-1] }}",
    "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith('x') }} {{ 'aXbX'.replace('X', '-') }}",
    "{{ 'Hello World'.upper() }} {{ 'Hello World'.lower() }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }}",
    "[{{ '  x  ' | trim }}] {{ messages | length }} {{ 'héllo' | length }} {{ [1,2] | count }} {{ 'abc' | upper }}",
    "{{ {'b': 1, 'a': [1, 'x', none, true]} | tojson }} {{ 'q\"\\\\\\n' | tojson }} {{ {'k': 1} | tojson(indent=2) }}",
    "{{ [3,1,2] | first }} {{ [3,1,2] | last }} {{ [1,2,3] | join('-') }} {{ ['a','b'] | join }} {{ [1,2] | reverse | list }}",
    "{{ undefined_v | default('dflt') }} {{ '' | default('e', true) }} {{ 5 | string }} {{ '42' | int + 1 }} {{ -3 | abs }}",
    "{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}{% for k, v in {'c': 3}.items() %}{{ k }}{{ v }}{% endfor %}",
    "{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 'none!') }} {{ {'a': 1}.keys() | list }} {{ {'a': 1}.values() | list }}",
    "{{ range(3) | list }} {% for i in range(1, 7, 2) %}{{ i }}{% endfor %} {{ dict(a=1).a }}",
    "{{ strftime_now('%Y-%m-%d %H:%M:%S %b %B %a %A %y %j %I %p %%') }}",
    "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}",
    "a  \n  {%- if true -%}  \n  b  {%- endif %}\n  c {{- ' d ' -}} e\n{# comment #}\nf {#- c -#} g",
    "line1\n    {% if true %}\n    inside\n    {% endif %}\nline2\n  {# c #}\nend\n",
    "x {%+ if true %}y{% endif +%}\nz",
    "{{ 'a' }}\n{{ 'b' }}\n{% set q = 1 %}\n\n{{ q }}",
    "{{ \"it's\" }} {{ 'say \"hi\"' }} {{ 'tab\\tnew\\nline\\\\ \\u00e9 \\x41' }} {{ 'adj' 'acent' }}",
    "{{ [1, 'a', none, true, 1.5] }} {{ {'k': 'v'} }} {{ none }} {{ true }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }}",
    "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}{% endfor %}",
    "{{ messages[5] is defined }} {{ messages[0]['nokey'] is defined }} {{ none.x is defined }}",
    "{% if messages[0].role == 'system' %}{% set rest = messages[1:] %}{% else %}{% set rest = messages %}{% endif %}"
    "{% for m in rest %}{{ m.content | trim }}|{% endfor %}",
    "{% generation %}kept {{ 1 }}{% endgeneration %}",
    "{{ raise_exception('custom failure ' ~ messages | length) }}",
]
SNIPPET_MSGS = [{"role": "system", "content": "  sys  "}, {"role": "user", "content": "u1"},
                {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2 </think> x"}]

# outside the subset (or broken): q4k must refuse, not render something
REFUSED = [
    "{% macro m() %}x{% endmacro %}{{ m() }}",
    "{{ messages | map(attribute='role') | join }}",
    "{% filter upper %}x{% endfilter %}",
    "{% include 'other' %}",
    "{{ cycler('a', 'b') }}",
    "{% if true %}unclosed",
    "{{ 'a' + }}",
    "{{ undefined_name + 'x' }}",
    "{% set a, b = 1, 2 %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{{ " + "(" * 200 + "1" + ")" * 200 + " }}",
]


def check_snippets(tmpdir):
    fails = []
    for i, src in enumerate(SNIPPETS):
        path = os.path.join(tmpdir, "snippet%d.jinja" % i)
        with open(path, "w", encoding="utf-8") as f:
            f.write(src)
        for add_gen in (False, True):
            want, want_err = jinja_render(src, SNIPPET_MSGS, "<B>", "<E>", add_gen)
            rc, got, err = q4k_render(path, SNIPPET_MSGS, "<B>", "<E>", add_gen)
            if want_err is not None:
                if rc != 3 or want_err.split(": ", 1)[-1] not in err:
                    fails.append("snippet %d %r: jinja2 raised %r; q4k rc %d %r" % (i, src[:50], want_err, rc, err))
            elif rc != 0:
                fails.append("snippet %d %r: q4k failed: %s" % (i, src[:60], err))
            elif got != want:
                fails.append("snippet %d %r:\n    jinja2 %r\n    q4k    %r" % (i, src[:60], want, got))
    if fails:
        print("FAIL snippets: %d differ" % len(fails))
        for f in fails[:8]:
            print("  " + f)
    else:
        print("ok snippets (%d constructs byte-identical to jinja2)" % len(SNIPPETS))
    fails = []
    for i, src in enumerate(REFUSED):
        path = os.path.join(tmpdir, "refused%d.jinja" % i)
        with open(path, "w", encoding="utf-8") as f:
            f.write(src)
        rc, got, err = q4k_render(path, SNIPPET_MSGS, "<B>", "<E>", True)
        if rc != 4 or not err.startswith("chat template"):
            fails.append("refused %d %r: rc %d, stderr %r, stdout %r" % (i, src[:50], rc, err, got[:40]))
    if fails:
        print("FAIL refused: %d rendered or failed badly" % len(fails))
        for f in fails[:8]:
            print("  " + f)
    else:
        print("ok refused (%d templates outside the subset or runaway: refused with a message)" % len(REFUSED))


def main():
    import tempfile
    if not os.path.exists(TOOL):
        print("FAIL test_chat_template_py: %s is missing (make build/tool_chat_template)" % TOOL)
        return 1
    paths = sorted(os.path.join(TEMPLATES, f) for f in os.listdir(TEMPLATES) if f.endswith(".jinja"))
    ok = len(paths) >= 7
    if not ok:
        print("FAIL templates: only %d templates in %s" % (len(paths), TEMPLATES))
    for p in paths:
        ok = check_template(p) and ok
    with tempfile.TemporaryDirectory() as d:
        check_snippets(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
