"""Whether a statement may change ``search_path`` in a way the lock plan does not follow.

The lock plan follows a ``SET`` or ``RESET`` of ``search_path`` itself (``locks``). The code
a statement runs may change it too: ``set_config('search_path', ...)`` (or an ``UPDATE`` of
``pg_settings``, which calls it), a ``SET`` in a ``DO`` block, a procedure, a prepared
statement, ``SET ROLE`` (what ``$user`` means)... ``may_change`` reads the statement's parse
tree, and a ``DO`` block's body with PostgreSQL's own PL/pgSQL parser
(``pglast.parse_plpgsql``), every SQL text in it with the SQL parser. What it cannot read
may change it. The functions a statement calls (trigger functions included) are taken not
to change it: a function that sets it for its own run (``SET search_path`` in its
definition) restores it when it returns.
"""

from __future__ import annotations

import functools
from typing import Any

from pgmigrate.sql import do_block, parse_plpgsql_block, parse_tree, walk

Node = dict[str, Any]

#: ``PLpgSQL_expr.parseMode`` (``RawParseMode``, src/include/parser/parser.h): a whole
#: statement, an expression, the three forms of an assignment ``target := expression``.
_STATEMENT, _EXPRESSION, _ASSIGNMENTS = 0, 2, (3, 4, 5)

#: ``SET`` and ``RESET`` of these may change it (``$user`` follows the role).
_VARIABLES = ("search_path", "role", "session_authorization")


def may_change(node: Node) -> str | None:
    """Why the statement ``node`` (a parse node of ``sql.parse_tree``) may change
    ``search_path`` (to be read after "it may change it: "), or None when nothing in it
    does. A ``SET`` or ``RESET`` of it is one: the caller follows a statement's own. Never
    raises for a tree of a shape it does not expect: it may change it then."""
    try:
        return _statement(node)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as error:
        return f"its parse tree is not as expected ({type(error).__name__}: {error})"


def _statement(node: Node) -> str | None:
    (name, body), *_ = node.items()
    if name == "VariableSetStmt":
        return f"it runs {set_words(body)}" if changes_variable(body) else None
    if name == "DoStmt":
        return _do(body)
    if name == "CallStmt":
        return "it calls a procedure"
    if name == "DiscardStmt":
        return "it runs DISCARD ALL" if body.get("target") == "DISCARD_ALL" else None
    return next((reason for key, value in walk(node) if (reason := _sql_node(key, value))), None)


def changes_variable(body: Node) -> bool:
    """Whether the ``SET``/``RESET`` ``body`` (a ``VariableSetStmt``) may change it."""
    return body["kind"] == "VAR_RESET_ALL" or body.get("name") in _VARIABLES


def set_words(body: Node) -> str:
    """``SET search_path``, ``RESET ALL``...: a ``VariableSetStmt`` in words."""
    kind = body["kind"]
    if kind == "VAR_RESET_ALL":
        return "RESET ALL"
    verb = "RESET" if kind == "VAR_RESET" else "SET"
    return f"{verb} {body.get('name', '')}"


def _sql_node(key: str, value: Any) -> str | None:
    """Why the node ``key`` of a SQL parse tree may change it: a call of ``set_config``
    (any schema, any arguments), an ``UPDATE`` of ``pg_settings`` (its rule calls
    ``set_config``), ``EXECUTE`` of a prepared statement (``CREATE TABLE AS EXECUTE``,
    ``EXPLAIN ANALYZE EXECUTE``)."""
    if key == "FuncCall":
        names = value.get("funcname", [])
        if names and names[-1].get("String", {}).get("sval") == "set_config":
            return "it calls set_config()"
    elif key == "UpdateStmt" and value.get("relation", {}).get("relname") == "pg_settings":
        return "it updates pg_settings (which calls set_config())"
    elif key == "ExecuteStmt":
        return "it runs a prepared statement"
    return None


def _do(body: Node) -> str | None:
    """A ``DO`` block: its PL/pgSQL read (docs: "DO"; plpgsql is the default language)."""
    language, source = do_block(body)
    if language != "plpgsql":
        return f"its language {language} cannot be read"
    if source is None:
        return "its body cannot be found in the parse tree"
    return _plpgsql(source)


@functools.lru_cache(maxsize=256)
def _plpgsql(source: str) -> str | None:
    """Why the PL/pgSQL block ``source`` may change it: any statement at any depth (the
    variables' defaults and cursors' queries included) that does, dynamic SQL whose text is
    not a constant (``EXECUTE``, ``FOR ... IN EXECUTE``, ``OPEN ... FOR EXECUTE``), a
    nested ``DO``, ``COMMIT`` or ``ROLLBACK`` (a ``SET LOCAL`` before it ends or is undone)."""
    from pglast import parser

    try:
        tree = parse_plpgsql_block(source)
    except (parser.ParseError, ValueError) as error:
        return f"PL/pgSQL's parser rejects its body ({error})"
    for key, value in walk(tree):
        reason = None
        if key == "PLpgSQL_expr":
            reason = _expression(value)
        elif key in ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors"):
            reason = _dynamic(value.get("query"))
        elif key == "dynquery":  # OPEN ... FOR EXECUTE, RETURN QUERY EXECUTE
            reason = _dynamic(value)
        elif key in ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback"):
            reason = "it commits or rolls back"
        if reason is not None:
            return reason
    return None


def _expression(expression: Node) -> str | None:
    """A ``PLpgSQL_expr``: a statement, an expression or an assignment, as its
    ``parseMode`` says; read with the SQL parser."""
    query, mode = expression.get("query", ""), expression.get("parseMode", _STATEMENT)
    if mode == _STATEMENT:
        return _embedded(query)
    if mode == _EXPRESSION:
        return _embedded(f"SELECT {query}")
    if mode in _ASSIGNMENTS:
        return _assignment(query)
    return f"it holds an expression it cannot read: {query}"


def _embedded(sql: str) -> str | None:
    """Why SQL run by a block may change it (what ``may_change`` says of each statement; a
    ``DO`` in a block is not read further)."""
    statements = parse_tree(sql)
    if statements is None:
        return f"it runs SQL the parser rejects: {sql}"
    for _, node in statements:
        if "DoStmt" in node:
            return "it runs a DO block of its own"
        reason = _statement(node)
        if reason is not None:
            return reason
    return None


def _assignment(query: str) -> str | None:
    """``target := expression`` (or ``=``): PostgreSQL's scanner finds where the target
    ends; both sides are read as the expressions of a ``SELECT`` (a subscript is one)."""
    from pglast import parser

    try:
        tokens = parser.scan(query)
    except parser.ParseError:
        tokens = []
    raw, depth = query.encode(), 0  # token offsets are in bytes
    for token in tokens:
        if token.name in ("ASCII_40", "ASCII_91"):  # ( [
            depth += 1
        elif token.name in ("ASCII_41", "ASCII_93"):  # ) ]
            depth -= 1
        elif depth == 0 and token.name in ("COLON_EQUALS", "ASCII_61"):  # := =
            target, value = raw[: token.start].decode(), raw[token.end + 1 :].decode()
            return _embedded(f"SELECT {target}, {value}")
    return f"it holds an assignment it cannot read: {query}"


def _dynamic(query: Any) -> str | None:
    """Dynamic SQL (its text a ``PLpgSQL_expr``): read when the text is a string constant."""
    text = _constant(query)
    if text is None:
        return "it runs dynamic SQL (EXECUTE of a string it cannot know)"
    return _embedded(text)


def _constant(query: Any) -> str | None:
    """The string a ``PLpgSQL_expr`` is when it is a string constant, else None."""
    expression = query.get("PLpgSQL_expr", {}) if isinstance(query, dict) else {}
    statements = parse_tree(f"SELECT {expression.get('query', '')}") or ()
    if len(statements) != 1:
        return None
    select = statements[0][1].get("SelectStmt", {})
    targets = select.get("targetList", [])
    if len(targets) != 1 or set(select) - {"targetList", "limitOption", "op"}:
        return None
    constant = targets[0].get("ResTarget", {}).get("val", {}).get("A_Const", {}).get("sval")
    return None if constant is None else constant.get("sval", "")
