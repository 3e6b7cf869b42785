"""The rule tables of the caption parser (:mod:`semcc.metrics.semantic`): the LEVIR-CC vocabulary of change
captions, word by word (issue 13's semantic caption metrics; the paper's Sec. IV-B metrics are n-gram ones).

Each table maps surface words or phrases (lower case, punctuation dropped as
:func:`semcc.data.text.normalize_caption` does) to what the parser makes of them: object classes, directions of
change, counts, places, and the function and descriptive words a claim does not model. Extending the parser to a
new word is one line in one table; ``benchmarks/caption_parser_coverage.py`` measures what the tables cover.
"""

from __future__ import annotations

#: The object classes a claim can name (``other``: a recognised object outside the five LEVIR-MCI-like classes).
CLASSES: tuple[str, ...] = ("building", "road", "vegetation", "bareland", "water", "parking", "other")

# ------------------------------------------------------------------------------------------------ rule tables
def _words(text: str) -> list[str]:
    """The space-separated words of a table entry (keeps the tables readable)."""
    return text.split()


#: Extra no-change sentences beyond :data:`semcc.data.text.NO_CHANGE_SENTENCES` (normalised text -> no change).
NO_CHANGE_EXTRA: tuple[str, ...] = (
    "nothing has changed",
    "there is no change",
    "no change",
    "nothing changed",
    "the scene remains the same",
    "the two scenes are the same",
    "the two scenes are identical",
)

#: Object phrases -> class. Plural and singular forms are both listed; multi-word phrases win over their words.
CLASS_WORDS: dict[str, str] = {
    **dict.fromkeys(
        _words("house houses building buildings villa villas residential bungalow bungalows mansion mansions structure "
        "structures construction constructions warehouse warehouses factory factories mall malls tower towers "
        "block blocks complex village apartment apartments dwelling dwellings cottage cottages room rooms "
        "shed sheds greenhouse greenhouses complexes depots depot stadium stadiums pavilion pavilions hut huts "
        "longhouse longhouses district districts foundation foundations school hospital"),
        "building",
    ),
    "residential area": "building", "residential areas": "building", "street blocks": "building",
    "storage tank": "other", "storage tanks": "other", "tank": "other", "tanks": "other",
    **dict.fromkeys(
        _words(
        "road roads street streets path paths lane lanes track tracks trail trails crossroad crossroads crossing "
        "intersection intersections roundabout t-junction junction bypass bypasses viaduct viaducts highway "
        "highways pavement avenue driveway driveways overpass overpasses footpath footpaths bridge bridges "
        "railway"),
        "road",
    ),
    **dict.fromkeys(
        _words("tree trees vegetation woods wood forest forests grass grassland grasslands green plants plant bushes "
        "bush shrubs shrub woodland woodlands jungle meadow meadows moorland pasture lawn lawns greenery "
        "farmland farmlands crops brushwoods brushwood"),
        "vegetation",
    ),
    **dict.fromkeys(
        _words("bareland barelands wasteland wastelands desert deserts land ground field fields clearing soil "
        "mounds mound sand earth"),
        "bareland",
    ),
    "bare land": "bareland", "bare ground": "bareland", "bare soil": "bareland", "bare lands": "bareland",
    "open space": "bareland", "open spaces": "bareland", "open area": "bareland",
    "open land": "bareland", "empty space": "bareland", "vacant land": "bareland", "construction site": "bareland",
    "construction sites": "bareland",
    **dict.fromkeys(_words("water lake lakes pond ponds river rivers pool pools reservoir reservoirs"), "water"),
    "swimming pool": "water", "swimming pools": "water",
    **dict.fromkeys(_words("parking car cars vehicles vehicle trucks truck"), "parking"),
    "parking lot": "parking", "parking lots": "parking", "parking space": "parking", "parking spaces": "parking",
    "parking area": "parking", "parking place": "parking",
    **dict.fromkeys(
        _words(
        "playground playgrounds court courts square squares park parks containers container site sites yard yards "
        "screen screens facilities facility platform platforms sundries boxes stuff objects cistern"),
        "other",
    ),
    "basketball court": "other", "basketball courts": "other", "tennis court": "other", "tennis courts": "other",
    "football field": "other", "solar panels": "other",
}

#: Classes named as an extent, not as countable objects: a leading "a"/"an" gives no count ("a forest").
UNCOUNTABLE: frozenset[str] = frozenset({"vegetation", "bareland", "water"})

#: Verb / adjective phrases -> direction. ``replace`` and ``become`` are role-swapping (see ``_ROLE_VERBS``).
DIRECTION_WORDS: dict[str, str] = {
    **dict.fromkeys(
        _words("built build builds constructed construct appear appears appeared appearing added add emerge "
        "emerges emerged emerging new newly erected developed completed finished show shows showed shown "
        "established planted grow grows grown growing arise arises arisen rise risen rises develops develop"),
        "added",
    ),
    "show up": "added", "shows up": "added", "showed up": "added", "set up": "added", "come out": "added",
    "under construction": "added", "being built": "added", "pops up": "added", "spring up": "added",
    **dict.fromkeys(
        _words(
        "removed remove demolished disappear disappears disappeared disappearing vanish vanished vanishes cleared "
        "leveled levelled destroyed gone withered decreases decreased reduced cut felled razed fades fade "
        "faded missing flattened decrease shrunk shrinks removal"),
        "removed",
    ),
    "torn down": "removed", "knocked down": "removed", "cut down": "removed", "pulled down": "removed",
    "taken down": "removed", "no longer": "removed",
    **dict.fromkeys(
        _words("widened widens broadened extended extends extend expanded enlarged rebuilt reconstructed renovated "
        "restored reshaped changed lusher greener thicker denser sparser bigger larger wider longer increased "
        "increases connected joined lengthened paved repaved expands expand reconstruction changes moved"),
        "changed",
    ),
}

#: Role-swapping verbs. ``replace``: the active subject is the newcomer ("houses replace the trees"), the passive
#: subject the replaced thing ("the trees are replaced by houses"). ``become``: the subject is replaced by what
#: follows ("the bareland becomes a residential area"), or merely changed when no object follows ("... sparse").
ROLE_VERBS: dict[str, str] = {
    **dict.fromkeys(_words("replace replaces replaced replacing"), "replace"),
    **dict.fromkeys(
        _words("become becomes became turned turn turns turning converted transformed"), "become"),
    "turned into": "become", "turns into": "become", "turn into": "become", "turning into": "become",
    "converted into": "become", "converted to": "become", "transformed into": "become", "changed into": "become",
    "developed into": "become", "rebuilt into": "become", "made into": "become", "covered by": "become",
    "covered with": "become", "occupied by": "become", "filled with": "become", "taken over by": "become",
}

#: Count words -> number.
COUNT_WORDS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "single": 1, "another": 1, "two": 2, "both": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "a pair of": 2, "a couple of": 2,
}

#: Vague quantity words, kept verbatim in :attr:`ObjectClaim.count_word`.
VAGUE_WORDS: frozenset[str] = frozenset((
    *_words("some several many few a few lots massive numerous multiple more certain plenty much most all various "
    "dozens countless large-scale"),
    "lots of", "a lot of", "plenty of", "a large number of", "a number of", "a series of", "a few of",
))

#: The numbers a vague quantity word is true of, for the count scores (``None``: no upper bound). SynthLEVIR's
#: rules (:func:`semcc.data.synthetic.language.count_words`: 3-5 several / some, 6+ many), widened to 2 for
#: "some" / "a few" / "multiple" as people use them; words not listed ("more", "all") are not scored.
VAGUE_COUNTS: dict[str, tuple[int, int | None]] = {
    **dict.fromkeys(("some", "a number of", "various", "multiple", "a few", "few", "a few of"), (2, 5)),
    "several": (3, 5),
    **dict.fromkeys(("many", "lots of", "a lot of", "plenty of", "a large number of", "numerous", "dozens",
                     "countless", "massive", "large-scale", "lots", "plenty"), (6, None)),
}

#: Collective nouns followed by "of": the following object gets a vague count ("a row of", "two rows of").
QUANTITY_NOUNS: frozenset[str] = frozenset(
    _words("row rows line lines group groups cluster clusters lot lots number area areas piece pieces patch patches "
    "part parts half most set sets series strip strips stretch block blocks pile piles string bunch complex")
)

#: Place words -> normalised place. ``top``/``bottom`` and ``left``/``right`` met in one place phrase combine to
#: a corner (``top_left``); "corner" alone is kept as ``corner``.
PLACE_WORDS: dict[str, str] = {
    **dict.fromkeys(_words("top upper above north northern"), "top"),
    **dict.fromkeys(_words("bottom lower below south southern"), "bottom"),
    **dict.fromkeys(_words("left west western leftmost"), "left"),
    **dict.fromkeys(_words("right east eastern rightmost"), "right"),
    **dict.fromkeys(_words("middle center centre central centered centred"), "centre"),
    "corner": "corner", "corners": "corner", "edge": "edge", "edges": "edge", "border": "edge", "margin": "edge",
    "everywhere": "everywhere", "whole": "everywhere", "entire": "everywhere",
    "roadside": "along_road", "roadsides": "along_road",
    **{f"{v}-{h}": f"{PV}_{PH}" for v, PV in (("upper", "top"), ("lower", "bottom"), ("top", "top"),
                                                ("bottom", "bottom")) for h, PH in (("left", "left"),
                                                                                   ("right", "right"))},
}

#: Prepositions after which an object noun is context ("along the road" -> ``along_road``, "near the woods" ->
#: ``near_vegetation``), not a changed object.
NEAR_PREPOSITIONS: frozenset[str] = frozenset((
    *_words("along alongside beside besides by near around across through between among surrounding surround "
    "facing behind opposite"),
    "next to", "on both sides of", "on either side of", "on each side of", "both sides of", "on the side of",
    "at the side of", "by the side of", "on two sides of", "the side of", "the sides of", "sides of", "side of",
    "surrounded by", "parallel to", "close to", "adjacent to", "in front of", "at the end of", "the end of",
    "end of", "at the edge of", "the edge of", "at the corner of", "the corner of", "corner of", "in the middle of",
    "the middle of", "middle of", "intersection of", "on the other side of", "on one side of", "to the right of",
    "to the left of", "on the right of", "on the left of", "the right of", "the left of",
))

#: Prepositions after which an object noun is the site of the change ("on the bareland" -> ``on_bareland``).
ON_PREPOSITIONS: frozenset[str] = frozenset(_words("on in at into from inside within onto over under of to"))

#: "by" after a passive role verb introduces the newcomer ("replaced by houses").
AGENT_WORDS: frozenset[str] = frozenset({"by"})

#: Pronouns standing for the last-named object ("villas are built along it").
REFERENCE_WORDS: frozenset[str] = frozenset(_words("it them ones one its their they this that these those"))

#: Clause breaks: "and" / "while" split clauses once the current clause has a verb; commas are gone already.
CONJUNCTIONS: frozenset[str] = frozenset({"and", "while", "but", "whereas", "meanwhile", "then", "also"})
#: Coordinators that join objects without ending the clause ("a residential area with roads").
COORDINATORS: frozenset[str] = frozenset({"with", "as well as", "together with", "plus", "or", "including"})

#: Function words: carry no claim.
FUNCTION_WORDS: frozenset[str] = frozenset(
    _words("the is are was were be been being has have had there here of to for which that where who what when as than "
    "so such only just still now also very too quite rather even well respectively respective each every other "
    "others own s we can see seen scene scenes image images picture pictures photo view area areas region "
    "regions place places part parts side sides position location spot up down out off forward away from "
    "again all while do does did will would may might not no")
)

#: Descriptive words the claim does not model (size, shape, material, arrangement, colour); known, not unparsed.
DESCRIPTORS: frozenset[str] = frozenset(
    _words(
    "large small big huge giant massive-sized tiny little medium medium-sized large-sized small-sized wide narrow "
    "long short tall high low neat neatly arranged orderly orderly-arranged tidy tidily regular regularly "
    "detached attached scattered sparse sparsely dense densely closely spaced distributed lined aligned "
    "winding straight curved curving circular round ring arc vertical horizontal parallel diagonal "
    "crossed cross intersecting t-shaped l-shaped u-shaped s-shaped square-shaped rectangular irregular curly "
    "cement concrete asphalt dirt unsurfaced gravel mud muddy sandy paved black white red blue yellow grey gray "
    "brown dark light bright green-roofed red-roofed blue-roofed lush dry rugged uneven flat "
    "main branch secondary major minor original former existing old previous earlier same similar different "
    "separate single-family individual private public residential-style staggered connected connecting leading "
    "running runs run extending going passing crosses stretches stretching marching located "
    "situated stands stand standing lies lying sits sitting parked placed together alone "
    "nearby surrounding greatly much slightly partly partially mostly completely entirely "
    "fully totally gradually obviously clearly significantly apparently mainly respectively  "
    "multi-storey storey story floor floors level levels roof roofs roofed shaped shape form forms formed "
    "make makes made take takes taken occupy occupies occupied cover covers covered fill fills filled "
    "divide divides divided split splits join joins meet meets converge converges link links connect connects "
    "contain contains containing include includes surround surrounds lie lies keep keeps kept remain remains "
    "remained exist exists existed quantity amount size density "
    "bare line lines circle circles angle higher extra abandoned full less smaller joint realized consisting "
    "remaining intersect directions direction width luxuriant additional fewer face faces uncompleted playing "
    "empty raw curve deep zigzag compactly brand intertwined exposed stacked dried unfinished horizontally "
    "vertically crisscross forked vigorous young grassy barren incomplete scatter great vibrant almost end "
    "branches space open lot row t half group front rest point instead majority continues continue comes used "
    "put leave quantity amount size density")
)
