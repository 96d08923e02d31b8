"""The test cases: questions about Python written by hand, with what a good answer holds.

Each question comes with an *evidence* phrase, a short quotation from the
help topic that answers it, and *keywords* a correct answer contains. The
relevant topics of a question are derived from the corpus, reproducibly:
every topic whose text contains the evidence (the same paragraph appears in
"for" and in the "compound" overview, for example). Retrieval evaluators
score on those topic ids, the answer evaluator on the keywords.
"""

from __future__ import annotations

import functools
from typing import Any

from .corpus import load_topics, normalize

__all__ = ["QUESTIONS", "build_test_cases"]

# (case id, question, evidence quoted from the docs, keywords the answer must contain)
QUESTIONS: list[tuple[str, str, str, list[str]]] = [
    (
        "assert-optimized",
        "What happens to assert statements when Python runs with optimizations on?",
        '"False" when optimization is requested',
        ["__debug__"],
    ),
    (
        "augassign-once",
        "Is x += 1 exactly the same as x = x + 1?",
        'In the augmented version, "x" is only evaluated once',
        ["evaluated once"],
    ),
    (
        "await-where",
        "Where is it allowed to use an await expression?",
        "Can only be used inside a *coroutine function*",
        ["coroutine function"],
    ),
    (
        "break-loop",
        "What does break do to the else clause of the loop it leaves?",
        'It terminates the nearest enclosing loop, skipping the optional "else" clause',
        ["skipping"],
    ),
    (
        "continue-next",
        "What does a continue statement do inside a loop body?",
        "It continues with the next cycle of the nearest enclosing loop",
        ["next cycle"],
    ),
    (
        "del-name",
        "What does deleting a variable name with del actually remove?",
        "Deletion of a name removes the binding of that name",
        ["binding"],
    ),
    (
        "global-assign",
        "How can a function assign to a variable defined at module level?",
        'It would be impossible to assign to a global variable without "global"',
        ["global"],
    ),
    (
        "nonlocal-rebind",
        "How can an inner function rebind a variable of its enclosing function?",
        'The "nonlocal" statement causes the listed identifiers to refer to previously bound variables',
        ["nonlocal"],
    ),
    (
        "lambda-statements",
        "Can an anonymous function made with lambda contain statements?",
        "functions created with lambda expressions cannot contain statements",
        ["cannot contain statements"],
    ),
    ("pass-placeholder", "Which statement does nothing and serves as a placeholder?", "is a null operation", ["pass"]),
    (
        "return-generator",
        "What happens when a return statement runs inside a generator function?",
        'the "return" statement indicates that the generator is done',
        ["StopIteration"],
    ),
    (
        "raise-from",
        "How are exceptions chained with raise from, and where is the original stored?",
        'The "from" clause is used for exception chaining',
        ["__cause__"],
    ),
    (
        "try-finally",
        "What is the finally clause of a try statement for?",
        'If "finally" is present, it specifies a ‘cleanup’ handler',
        ["cleanup"],
    ),
    (
        "with-protocol",
        "Which methods of a context manager does the with statement call on entry and exit?",
        'The context manager’s "__enter__()" method is invoked',
        ["__enter__"],
    ),
    (
        "for-else",
        "When does the else clause of a for loop run?",
        'When the iterator is exhausted, the suite in the "else" clause, if present, is executed',
        ["exhausted"],
    ),
    (
        "while-loop",
        "How does a while loop keep repeating its body?",
        "This repeatedly tests the expression and, if it is true, executes the first suite",
        ["repeatedly tests"],
    ),
    (
        "if-elif",
        "How does Python choose which branch of an if elif else chain to run?",
        "It selects exactly one of the suites by evaluating the expressions one by one",
        ["exactly one"],
    ),
    (
        "class-default-base",
        "Which base class does a class inherit from when none is listed?",
        'Classes without an inheritance list inherit, by default, from the base class "object"',
        ["object"],
    ),
    (
        "function-defaults",
        "When are default parameter values of a function evaluated?",
        "Default parameter values are evaluated from left to right when the function definition is executed",
        ["function definition is executed"],
    ),
    (
        "import-steps",
        "What are the two steps performed by a plain import statement?",
        "find a module, loading and initializing it if necessary",
        ["find a module"],
    ),
    (
        "booleans-false",
        "Which values count as false in a boolean context?",
        'the following values are interpreted as false: "False", "None", numeric zero of all types',
        ["None", "zero"],
    ),
    (
        "truth-bool",
        "How can a user-defined object customize its truth value?",
        'User-defined objects can customize their truth value by providing a "__bool__()" method',
        ["__bool__"],
    ),
    (
        "chained-comparison",
        "How is a chained comparison like a < b < c evaluated?",
        'except that "y" is evaluated only once',
        ["only once"],
    ),
    (
        "in-substring",
        "What does the in operator check when both operands are strings?",
        'is "True" if and only if *x* is a substring of *y*',
        ["substring"],
    ),
    (
        "power-unary",
        "Why does -1**2 evaluate to -1?",
        "The power operator binds more tightly than unary operators on its left",
        ["more tightly"],
    ),
    (
        "right-shift",
        "What is shifting an integer right by n bits equivalent to?",
        'A right shift by *n* bits is defined as floor division by "pow(2,n)"',
        ["floor division"],
    ),
    (
        "invert-operator",
        "What does the ~ operator compute for an integer x?",
        'The bitwise inversion of "x" is defined as "-(x+1)"',
        ["-(x+1)"],
    ),
    (
        "dict-duplicate-keys",
        "Which value wins when a dictionary display repeats a key?",
        "the last value (textually rightmost in the display) stored for a given key value prevails",
        ["prevails"],
    ),
    (
        "dict-get-default",
        "How can I look up a dictionary key without risking a KeyError?",
        'so that this method never raises a "KeyError"',
        ["default"],
    ),
    (
        "strip-whitespace",
        "How do I remove leading and trailing whitespace from a string?",
        "Return a copy of the string with the leading and trailing characters removed",
        ["leading and trailing"],
    ),
    (
        "zero-padding",
        "How can a format specification pad numbers with zeros?",
        "enables sign-aware zero-padding for numeric types",
        ["zero-padding"],
    ),
    (
        "raw-strings",
        "How do raw string literals treat backslashes?",
        "treat backslashes as literal characters",
        ["literal characters"],
    ),
    (
        "integer-underscores",
        "What are underscores in integer literals for?",
        "Underscores are ignored for determining the numeric value of the literal",
        ["ignored"],
    ),
    (
        "complex-literal",
        "How do I write a complex number with a nonzero real part?",
        "To create a complex number with a nonzero real part, add a floating point number to it",
        ["(3+4j)"],
    ),
    (
        "is-identity",
        "What does the is operator compare between two objects?",
        'The ‘"is"’ operator compares the identity of two objects',
        ["identity"],
    ),
    (
        "class-scope-methods",
        "Can methods see names defined directly in the class body?",
        "The scope of names defined in a class block is limited to the class block",
        ["methods"],
    ),
    (
        "unhandled-exception",
        "What does the interpreter do with an exception that is never handled?",
        "When an exception is not handled at all, the interpreter terminates execution of the program",
        ["traceback"],
    ),
    (
        "repr-vs-str",
        "What is the difference between __repr__ and __str__?",
        'Called by the "repr()" built-in function to compute the “official” string representation',
        ["official"],
    ),
    (
        "getattr-fallback",
        "Which method is called when the normal attribute lookup fails?",
        'Called when the default attribute access fails with an "AttributeError"',
        ["__getattr__"],
    ),
    (
        "slots-memory",
        "How can a class save memory by not giving each instance a __dict__?",
        "allow us to explicitly declare data members",
        ["__slots__"],
    ),
    (
        "len-protocol",
        "Which method does the built-in len() call on a container object?",
        'Called to implement the built-in function "len()"',
        ["__len__"],
    ),
    (
        "exit-suppress",
        "How can a context manager's exit method suppress an exception?",
        "If an exception is supplied, and the method wishes to suppress the exception",
        ["true"],
    ),
    (
        "debugger-breakpoint",
        "How do I stop a running program and enter the pdb debugger at a given line?",
        "The typical usage to break into the debugger is to insert",
        ["breakpoint"],
    ),
    (
        "call-instances",
        "How can instances of a class be called like functions?",
        "Called when the instance is “called” as a function",
        ["__call__"],
    ),
    (
        "list-extend",
        "How do I append all the items of another iterable to a list?",
        "extends *s* with the contents of",
        ["extend"],
    ),
    (
        "yield-generator",
        "What turns a function definition into a generator function?",
        "Using yield in a function definition is sufficient to cause",
        ["yield"],
    ),
    (
        "none-return",
        "What value does a function return when it has no return statement?",
        "This object is returned by functions that don’t explicitly return a value",
        ["None"],
    ),
    (
        "private-mangling",
        "What happens to names starting with two underscores inside a class?",
        "The transformation inserts the class name, with leading underscores removed",
        ["class name"],
    ),
    (
        "mixed-arithmetic",
        "What type results from adding an int to a float?",
        "if either argument is a floating point number, the other is converted to floating point",
        ["floating point"],
    ),
    ("async-for", "How do I iterate over an asynchronous iterator?", 'provides an "__aiter__" method', ["__aiter__"]),
]


def _relevant_topics(evidence: str) -> list[str]:
    needle = normalize(evidence)
    return [topic for topic, text in load_topics().items() if needle in normalize(text)]


@functools.lru_cache(maxsize=1)
def _cases() -> tuple[dict[str, Any], ...]:
    cases = []
    for case_id, query, evidence, keywords in QUESTIONS:
        cases.append(
            {
                "case_id": case_id,
                "query": query,
                "expected": {"topics": _relevant_topics(evidence), "keywords": keywords, "evidence": evidence},
            }
        )
    return tuple(cases)


def build_test_cases() -> list[dict[str, Any]]:
    """The test cases in ``run_batch_test`` form: ``{"case_id", "query", "expected"}``."""
    return [dict(case, expected=dict(case["expected"])) for case in _cases()]
