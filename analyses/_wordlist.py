"""Common lowercase English words for the word-index probes (written for this project).

Only the letters a-z, two to eleven letters long, no duplicates. The probes split them into train
and test pools per length, so that test prompts use words the probe never saw.
"""

from __future__ import annotations

_WORDS = """
an as at be by do go he if in is it me my no of on or so to up us we
act add age ago air all and any arm art ask bad bag bed big bit box boy
bus but buy can car cat cup cut day dog dry ear eat egg end eye far few
fit fly for fun gas get god gun hat her him his hot how ice ill job key
kid lad law lay leg let lie lot low man map may men mix mom new not now
off oil old one our out own pay pen per put red run sad say sea see set
she sit six sky son sun tax tea ten the too top try two use war way wet
who why win yes yet you
able arms army away baby back ball band bank base bear beat bird blue
boat body bone book born both call calm card care case cash cell city
club coal coat cold come cook cool copy core cost crew dark data date
dead deal dear deep desk diet door down draw drop dust duty each east
easy edge else even ever face fact fail fair fall farm fast fear feel
file fill film find fine fire fish flat food foot form free full game
gift girl give glad goal gold good grow hair half hall hand hard head
hear heat help here hill hold hole home hope hour huge idea iron item
join jump just keep kind king knee know lack lady lake land last late
lead left life lift like line list live long look lord lose loud love
luck made mail main make mark meal meet milk mind miss moon more most
move much must name near neck need news next nice nine none nose note
once only open page pain pair park part pass past path pick plan play
poem pool poor pull pure push race rain rate read real rest rice rich
ride ring rise risk road rock role roof room root rose rule safe salt
same sand save seat seed seem sell send ship shoe shop shot show shut
sick side sign sing size skin slow snow soft soil song soon sort soul
spot star stay step stop such suit sure swim tail take talk tall task
team tell term test text than that them then they thin this tide time
tiny tool tour town tree trip true turn type unit upon used vast very
view vote wait walk wall want warm wash wave weak wear week well west
what when wide wife wild will wind wine wing wise wish wood word work
yard year your zero zone
about above admit adult after again agree ahead alarm alive allow alone
along angle angry apple argue arise aside avoid award aware beach begin
below birth black blade blind block blood board bread break brick brief
bring broad brown build burst cabin carry catch cause chain chair chalk
cheap check chest chief child civil claim class clean clear climb clock
close cloud coast count court cover crash cream crime cross crowd dance
death delay depth dirty doubt dozen draft drama dream dress drink drive
early earth eight empty enemy enjoy enter equal error event every exact
exist extra faith false fault field fifth fight final first flame floor
focus force frame fresh front fruit funny giant glass grain grand grass
great green group guard guess guest guide happy heart heavy horse hotel
house human humor image index inner input issue judge knife laugh layer
learn least leave legal lemon level light limit local lucky lunch major
maker march match metal might minor model money month moral motor mouse
mouth music nerve never night noise north novel nurse ocean offer often
order other owner paint panel paper party peace phase phone photo piano
piece pilot pitch place plain plane plant plate point pound power press
price pride prime print prize proof proud queen quick quiet quite radio
raise range rapid reach ready refer river rough round route royal rural
scale scene score sense serve seven shade shake shape share sharp sheep
shelf shell shift shirt shock short sight skill sleep slice small smart
smile smoke solid sound south space spare speak speed spend sport staff
stage stand start state steam steel stick still stone store storm story
study style sugar table taste teach thick thing think third three throw
tight title today tooth topic total touch tower track trade train treat
trend trial truck trust truth uncle under union until upper upset urban
usual valid value video visit voice waste watch water wheel where which
while white whole woman world worry write wrong young youth
accept across action active advice affair afford agency almost always
amount animal answer anyone appear arrive artist attack autumn battle
beauty become before behind belief better beyond bitter bottle bottom
branch breath bridge bright broken budget burden butter button camera
cancel carbon career castle centre chance change charge choice church
circle client coffee column common corner cotton county couple course
cousin credit crisis custom damage danger dealer debate decade decide
defend degree demand design desire detail device dinner direct doctor
dollar double driver during effort eighth either energy engine enough
entire escape estate evening except expert export fabric factor family
famous farmer father female figure finger finish flight flower follow
forest forget formal friend future garden gentle global golden ground
growth guitar handle health height hidden holder honest hunger island
jacket junior ladder latter leader letter likely liquid listen
little lovely market master matter meadow member memory method middle
minute mirror modern moment mother motion museum narrow nation nature
nearly needle nobody normal notice number object office orange origin
palace parent people pepper period person planet player pocket poetry
police policy prayer pretty prison profit public purple rabbit reason
record region remote repair report rescue result return reward ribbon
saddle salary sample school screen script search season second secret
sector select senior series settle shadow silver simple singer sister
smooth soccer source speech spirit spring square stable street stream
strike strong studio summer supply surely symbol system tailor talent
target temple tennis theory thirty threat ticket timber toward travel
treaty tunnel twelve unique useful valley vessel victim visual volume
wallet weight window winter wonder wooden worker writer yellow
ability account address advance ancient another anxiety balance battery
bedroom benefit bicycle blanket brother cabinet capital captain central
century certain channel chapter chicken citizen climate clothes collect
college comfort company compare concert conduct contact content context
control correct country courage culture curtain current deliver density
diamond digital display distant economy edition element emotion
example exhibit explain factory fashion feather finance fitness foreign
fortune freedom gallery general genuine harvest healthy history holiday
husband imagine improve include journey justice kingdom kitchen landing
lecture library machine manager measure message million mineral mission
monitor morning musical mystery natural network nothing nuclear obvious
officer opinion package painter partner passage patient pattern payment
picture plastic popular portion poverty present primary private problem
process produce product program project promise protein purpose quality
quarter railway reading reality receipt recover regular related release
science section serious service session shelter silence similar society
soldier speaker station stomach storage strange student subject success
support surface teacher theatre thought tourist traffic trouble uniform
variety village vintage weather weekend welcome western whisper witness
absolute accident activity actually addition advanced afternoon
airplane building business calendar campaign champion
chemical children colonial complete computer consider constant continue
contract creative critical customer daughter decision delivery describe
designer dialogue director disaster discount distance district division
document domestic dynamic electric elephant emphasis employee engineer
evidence exchange exercise external familiar favorite festival football
frequent function graduate hospital identity industry innocent interest
internal judgment keyboard language learning location magazine majority
marriage material medicine midnight military minister mountain national
negative neighbor nineteen notebook occasion official operator ordinary
painting personal physical planning platform pleasant politics position
positive possible practice pregnant presence pressure previous princess
priority progress property province purchase question railroad reaction
recently relation relative religion remember research resident resource
response sandwich schedule security sentence separate shoulder skeleton
software specific standard strategy strength struggle surprise teenager
thousand together tomorrow training transfer universe vacation valuable
variable vehicle velocity violence weakness whatever wildlife yourself
adventure agreement apartment attention beautiful breakfast celebrate
challenge character chocolate community condition dangerous direction
discovery education emergency equipment everybody existence expensive
furniture generally happiness important including influence insurance
knowledge landscape necessary newspaper operation organized passenger
performer political potential president pollution procedure professor
secretary situation structure telephone temporary tradition wonderful
yesterday
basketball collection conference confidence connection discussion
especially everything experience generation government helicopter
impossible incredible individual initiative instrument laboratory
literature management membership microphone motivation particular
percentage permission philosophy population profession protection
restaurant revolution scientist strawberry television temperature
understand university vegetable background
""".split()

#: The word list, deduplicated in first-seen order.
WORDS: tuple[str, ...] = tuple(dict.fromkeys(w for w in _WORDS if w.isalpha() and w.islower()))
