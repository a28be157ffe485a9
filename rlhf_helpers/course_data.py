"""The course's own dataset: a deterministic, seeded generator of assistant-style Q&A data.

Everything in ``data/`` is produced by :func:`write` from the hand-written content below, so it can
be regenerated bit-for-bit (``python -m rlhf_helpers.course_data --out data --seed 0``) and a test
checks that the committed files still equal the code's output.

How a record is built
---------------------
* A **prompt** is a *template* filled with a *task* of one topic: "How do I {task}?" + "cook fluffy
  rice". Ten topics, twelve tasks each, six generic and two topic-flavoured templates.
* A **good answer** is a polite opener ("Happy to help!"), two or three of the task's tips (short,
  concrete sentences) and, often, a friendly closer ("Good luck!"). 15-60 words.
* A **flawed answer** shows one failure: ``off_topic`` (a good answer to another topic's task),
  ``rude``, ``rambling`` (filler sentences), ``repetitive`` (a tip said three times), ``refusal``
  (declines a harmless question), ``vague`` (a short non-answer) or ``too_short`` (correct but thin: an
  opener and a single tip).

The files
---------
* ``sft.jsonl`` - demonstrations of *mixed* quality, like real data: ~65% ``good``, the rest mildly
  flawed (``long``, ``repetitive``, ``no_opener``, ``vague``), so a later PPO stage has room to improve.
* ``preferences.jsonl`` - (chosen, rejected) pairs, one failure type each, ordered by the gold judge
  (:mod:`rlhf_helpers.judge`) with a margin; a stated share (:data:`LABEL_NOISE_RATE`) is swapped
  on purpose and flagged ``label_noise=True``, as human labels are never perfect.
* ``heldout.jsonl`` - prompts that never occur in training: the last two tasks of every topic
  (never used in training) and a template reserved for evaluation, each with a reference answer.
* ``pretrain.jsonl`` - plain prose paragraphs about the topics (no chat format), so a tiny language
  model can learn words and topics before SFT teaches it the Human/Assistant format.

Determinism: every part uses its own ``random.Random(f"{seed}:{part}")`` and only ordered
containers, so the output depends on nothing but ``seed`` and the sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from .judge import TOPICS, gold_score

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
FILES = ("sft", "preferences", "heldout", "pretrain")  # -> data/<name>.jsonl
DEFAULT_SIZES = {"sft": 3000, "preferences": 4000, "heldout": 200, "pretrain": 3000}
LABEL_NOISE_RATE = 0.05  # share of preference pairs whose chosen/rejected are swapped on purpose
MIN_MARGIN = 0.05  # every clean pair: gold_score(chosen) - gold_score(rejected) >= this
HELDOUT_ITEMS = 2  # the last tasks of every topic are kept for evaluation only
# too_short pairs the rambling ones: without them every shorter answer in the data is the better one, and a reward
# model learns "shorter is better" (on the tiny profile PPO then cut the third tip from its answers).
FAILURES = ("off_topic", "rude", "rambling", "repetitive", "refusal", "vague", "too_short")
# SFT demonstration quality mix (fractions sum to 1).
SFT_QUALITY = {"good": 0.65, "long": 0.10, "repetitive": 0.08, "no_opener": 0.09, "vague": 0.08}

# ---------------------------------------------------------------------------------------------
# Shared phrases. The judge recognises each of them (tests check every phrase against its markers).
# ---------------------------------------------------------------------------------------------
GENERIC_TEMPLATES = (
    "How do I {task}?",
    "What is the best way to {task}?",
    "Can you give me some tips to {task}?",
    "I want to {task}. Where should I start?",
    "What should I keep in mind when I {task}?",
    "Any advice on how to {task}?",
)
HELDOUT_TEMPLATE = "Could you explain how to {task}?"  # used only in heldout.jsonl

OPENERS = (
    "Happy to help!", "Great question.", "Sure!", "Of course!", "Good question!", "Glad you asked.",
    "Thanks for asking!", "Sure thing.", "Happy to help with that.", "Great question!",
)
CLOSERS = ("Hope this helps!", "Good luck!", "I hope that helps.", "Have fun with it!")
RUDE_OPENERS = (
    "Ugh, this is obvious.", "Seriously? Everyone knows this.", "What a silly question.",
    "This is so basic, but fine.", "Honestly, how do you not know this?", "Did you even try to think?",
    "Wow, that is a dumb question.", "Obviously, but okay.",
)
RUDE_CLOSERS = (
    "Now stop wasting my time.", "Figure out the rest yourself.", "It is not that hard.",
    "Try to keep up.", "Don't ask me again.",
)
REFUSALS = (
    "I'm sorry, but I can't help with that.", "I'm not able to give advice about {area}.",
    "I'd rather not answer questions about {area}.", "Sorry, I cannot help with this request.",
    "I won't answer that.", "That is not something I can help with.",
)
REFUSAL_TAILS = ("You may want to ask someone else.", "Maybe try another source.", "")
VAGUE_LINES = (
    "It depends on a lot of things.", "It really depends on your situation.",
    "Hard to say, everyone is different.", "There are many ways to do it.",
    "Just do some research and see what works for you.", "You could look it up online.",
    "Honestly, it is up to you.", "Who knows, it varies a lot.", "Just try a few things and see.",
)
FILLERS = (
    "To be honest, this is one of those things that a lot of people wonder about.",
    "Basically, there are a lot of little details here, you know.",
    "At the end of the day, you just want it to turn out well.",
    "As I said, it is sort of a big topic when you really think about it.",
    "I mean, people have been asking about this for a long, long time.",
    "Anyway, let me go over a few more things that might be worth mentioning.",
    "Needless to say, everyone has an opinion about this, and that is fine.",
    "For what it's worth, I have thought about this quite a bit over the years.",
    "All things considered, it is kind of an interesting question to think about.",
    "Like I said, there is a lot that could be said here if we had more time.",
)
# Mildly unspecific sentences for the SFT "vague" demonstrations (no vague *marker*: just less detail).
SOFT_GENERIC = (
    "Give it a try and adjust as you go.", "A little practice goes a long way.",
    "Take your time with it.", "You will get the hang of it soon.",
)

# ---------------------------------------------------------------------------------------------
# Topic content: templates, closers, general facts (for pretraining prose) and tasks with tips.
# Each task has four tips; the last HELDOUT_ITEMS tasks of a topic appear only in heldout.jsonl.
# ---------------------------------------------------------------------------------------------
CONTENT: dict[str, dict] = {
    "cooking": {
        "area": "cooking",
        "templates": ("I'm cooking dinner tonight. How do I {task}?", "I'm new to cooking. How can I {task}?"),
        "closers": ("Enjoy your cooking!", "Happy cooking, and enjoy!"),
        "facts": (
            "Cooking at home gives you control over the ingredients and the flavor of each dish.",
            "Most recipes rely on a few basic techniques like boiling, roasting, and sauteing.",
            "A heavy skillet and a sharp kitchen blade make most cooking tasks easier.",
            "Salt, acid, and fat are the building blocks of flavor in the kitchen.",
            "Reading the whole recipe before you start makes cooking calmer.",
            "Tasting as you cook is the easiest way to fix the seasoning of a dish.",
            "Fresh ingredients often need very little to taste good.",
            "Many cooks prepare every ingredient before they turn on the stove.",
        ),
        "items": (
            ("cook fluffy rice", (
                "Rinse the rice in cold water until the starch washes away.",
                "Use about one and a half cups of water per cup of rice in the pot.",
                "Simmer the rice covered on low heat for about 15 minutes.",
                "Let the rice rest off the stove for 5 minutes, then fluff it with a fork.")),
            ("boil eggs so they peel easily", (
                "Lower the eggs into water that is already boiling.",
                "Cook them for 9 to 11 minutes for firm yolks.",
                "Move the eggs to an ice bath right after cooking.",
                "Older eggs usually peel more easily after boiling than very fresh ones.")),
            ("sear a steak", (
                "Pat the steak dry with a paper towel before cooking.",
                "Season the steak generously with salt and pepper.",
                "Heat a heavy skillet until it is very hot before adding the steak.",
                "Let the steak rest for 5 minutes before slicing it.")),
            ("make a simple tomato sauce", (
                "Cook garlic gently in olive oil until fragrant.",
                "Add crushed tomatoes and a pinch of salt to the pan.",
                "Simmer the sauce for 20 minutes to thicken it.",
                "Finish the sauce with a little butter or olive oil.")),
            ("bake soft cookies", (
                "Use more brown sugar than white sugar for chewy cookies.",
                "Chill the cookie dough for 30 minutes before baking.",
                "Take the cookies out of the oven while the centers still look soft.",
                "Bake the cookies at 350 degrees for about 10 minutes.")),
            ("roast vegetables in the oven", (
                "Cut the vegetables into even pieces so they cook at the same rate.",
                "Toss the vegetables with olive oil and salt before roasting.",
                "Roast at 425 degrees in a single layer on the pan.",
                "Turn the vegetables once halfway through roasting.")),
            ("make a quick stir fry", (
                "Prepare every ingredient before you turn on the stove.",
                "Use a very hot wok or skillet and a little oil.",
                "Cook the meat first, then the greens, then add the sauce.",
                "Stir constantly in the wok so nothing burns.")),
            ("cook pasta properly", (
                "Use a large pot of well salted boiling water.",
                "Stir the pasta in the first minute so it does not stick.",
                "Taste the pasta a minute before the package time.",
                "Keep a cup of pasta water to loosen the sauce.")),
            ("make a fluffy omelette", (
                "Whisk the eggs well with a pinch of salt.",
                "Cook the omelette in butter over medium low heat.",
                "Add the fillings when the eggs are almost set.",
                "Fold the omelette and slide it onto a warm plate.")),
            ("season a bland soup", (
                "Taste the soup and add salt a little at a time.",
                "A splash of lemon juice or vinegar brightens a flat soup.",
                "Stir in fresh garlic or spices for more flavor.",
                "Cook the onion slowly at the start to build flavor in the broth.")),
            ("bake a loaf of bread", (
                "Knead the dough until it is smooth and springs back.",
                "Let the dough rise in a warm kitchen until it doubles in size.",
                "Bake the bread until the crust sounds hollow when tapped.",
                "Let the loaf cool before slicing it.")),
            ("keep kitchen knives sharp", (
                "Use a honing steel before each use to keep the blade straight.",
                "Sharpen the blade on a whetstone a few times a year.",
                "Cut on a wooden board, since glass and stone dull a kitchen knife quickly.",
                "Wash kitchen knives by hand and dry them right away.")),
        ),
    },
    "gardening": {
        "area": "gardening",
        "templates": ("I just started gardening. How do I {task}?", "For my garden, what is the best way to {task}?"),
        "closers": ("Enjoy your garden!", "Happy gardening, and good luck!"),
        "facts": (
            "Gardening is a slow hobby that rewards patience and regular attention.",
            "Healthy soil full of compost is the base of almost every thriving garden.",
            "Most plants grow best when they get the right amount of sun for their kind.",
            "A layer of mulch keeps the soil moist and stops many weeds from sprouting.",
            "Gardeners often keep notes on when they sow seeds and when they harvest.",
            "Native plants usually need less care because they suit the local climate.",
            "Checking the garden every day makes it easy to catch pests early.",
            "Even a small balcony can hold a productive container garden.",
        ),
        "items": (
            ("grow tomatoes on a balcony", (
                "Choose a compact tomato plant that suits a small balcony.",
                "Use a large container with at least five gallons of potting mix.",
                "Give the tomato plants six to eight hours of direct sun for a good harvest.",
                "Tie the stems to a stake as the plants grow.")),
            ("start seeds indoors", (
                "Sow the seeds in a light seed starting mix.",
                "Keep the soil moist but never soggy.",
                "Place the seedlings under a grow light for about 14 hours a day.",
                "Harden off the seedlings outside for a week before planting them.")),
            ("make compost at home", (
                "Mix green scraps like peels with brown material like dry leaves.",
                "Keep the compost moist, about as damp as a wrung out sponge.",
                "Turn the compost with a shovel every week or two to add air.",
                "Leave out greasy scraps so the compost does not attract pests.")),
            ("keep weeds out of the garden", (
                "Spread a thick layer of mulch around your plants.",
                "Pull weeds when the soil is damp so the roots come out.",
                "Hoe the garden beds lightly once a week.",
                "Plant closely so there is little bare soil for weeds.")),
            ("water houseplants correctly", (
                "Check the top inch of soil and water the houseplant only when it feels dry.",
                "Use containers with drainage holes so the roots do not rot.",
                "Water slowly until excess water flows out through the potting soil.",
                "Most houseplants need less watering in winter.")),
            ("prune rose bushes", (
                "Prune roses in late winter or early spring.",
                "Cut each stem just above an outward facing bud.",
                "Remove dead, damaged, and crossing canes from the rose first.",
                "Use clean pruners to avoid spreading disease between roses.")),
            ("grow a healthy lawn", (
                "Mow the grass high and never cut more than a third at once.",
                "Water the lawn deeply once or twice a week so the roots grow deep.",
                "Feed the lawn with a slow release fertilizer in spring and fall.",
                "Overseed thin spots of the lawn in early fall.")),
            ("get rid of aphids on my plants", (
                "Spray the aphids off with a strong blast from the garden hose.",
                "Wipe the leaves and stems with a mild soap and water solution.",
                "Attract ladybugs, which eat aphids, by planting flowers nearby.",
                "Check the undersides of the leaves for new aphids every few days.")),
            ("plant spring bulbs", (
                "Plant the bulbs in autumn before the ground freezes.",
                "Plant each bulb about three times as deep as it is tall.",
                "Place the pointed end of the bulb facing up in the soil.",
                "Choose a spot with good drainage so the bulbs do not rot.")),
            ("grow lettuce", (
                "Sow lettuce seeds in cool weather in spring or fall.",
                "Keep the soil evenly moist so the leaves stay sweet.",
                "Harvest the outer leaves and let the center keep growing.",
                "Give the lettuce plants some afternoon shade in hot weather.")),
            ("keep succulents alive", (
                "Give succulent plants bright sun, such as a sunny windowsill.",
                "Plant them in a fast draining cactus mix.",
                "Let the soil dry out completely between waterings.",
                "Avoid misting succulents, since damp leaves can rot.")),
            ("improve clay soil", (
                "Work plenty of compost into the clay soil every year.",
                "Avoid digging when the soil is wet and sticky.",
                "Build raised garden beds to improve drainage.",
                "Plant a cover of clover so its roots loosen the soil.")),
        ),
    },
    "travel": {
        "area": "travel",
        "templates": ("I have a trip coming up. How do I {task}?", "Any travel tips to help me {task}?"),
        "closers": ("Enjoy your trip!", "Safe travels!"),
        "facts": (
            "Travel is easier when you leave some free time in your itinerary.",
            "Many travelers keep digital and paper copies of their passport and tickets.",
            "Trains are often the most pleasant way to move between nearby cities.",
            "Learning a few words of the local language makes a trip warmer.",
            "Packing light makes every part of a journey simpler, from the airport to the hotel.",
            "Booking early usually gives you more choice of flights and hotels.",
            "A good travel plan balances famous sights with quiet time in each city.",
            "Checking the entry rules of a country before you book avoids surprises at customs.",
        ),
        "items": (
            ("pack a carry-on bag for a week", (
                "Roll your clothes instead of folding them so your suitcase holds more.",
                "Pick travel outfits in two or three colors that all match.",
                "Put liquids in small bottles inside one clear pouch for the airport.",
                "Wear your bulkiest shoes and jacket on the plane so your luggage stays light.")),
            ("deal with jet lag", (
                "Set your watch to the destination time when you board the flight.",
                "Get outside in daylight soon after your flight lands at the destination.",
                "Drink plenty of water during the flight and walk the aisle.",
                "Stay up until evening local time on the first day of your trip abroad.")),
            ("find cheap flights", (
                "Compare prices on a few flight search sites and airline pages.",
                "Be flexible with your travel dates and your departure airport.",
                "Book domestic flights one to three months ahead.",
                "Set fare alerts for the route and airline you want.")),
            ("get through airport security quickly", (
                "Arrive at the airport at least two hours before an international flight.",
                "Keep your liquids and electronics easy to reach in your luggage.",
                "Wear shoes that slip on and off easily at airport security.",
                "Have your boarding pass and passport ready in your hand.")),
            ("travel cheaply in Europe", (
                "Travel by train or bus between nearby cities.",
                "Stay in hostels or guesthouses instead of big hotels.",
                "Visit outside the peak tourist months when hotels and flights are cheaper.",
                "Look for food away from the main tourist sights.")),
            ("stay safe when traveling alone", (
                "Share your travel itinerary with a friend or family member back home.",
                "Keep a copy of your passport in a different bag from the original.",
                "Arrive in a new city during daylight and book the first hotel ahead.",
                "Use a small backpack that closes securely in crowded tourist spots.")),
            ("avoid losing my luggage", (
                "Put a luggage tag on the outside and your contact details inside the suitcase.",
                "Note the brand and color of your suitcase before you check it at the airport.",
                "Keep medicine and valuables in your carry-on.",
                "Choose direct flights when possible, since luggage gets lost on connections.")),
            ("learn basic phrases before a trip", (
                "Start with greetings, numbers, and the simple questions every tourist needs.",
                "Practice for ten minutes a day with a language course before the trip abroad.",
                "Learn how to ask for directions to the hotel and read signs in the city.",
                "Download an offline translation tool for your destination.")),
            ("choose a good hotel", (
                "Read recent hotel reviews from other travelers and look for comments about noise.",
                "Check how far the hotel is from public transit.",
                "Compare the final price of each hotel booking, not just the nightly rate.",
                "Book a room with free cancellation if your travel plans might change.")),
            ("travel with kids on a long flight", (
                "Pack snacks, headphones, and a few small surprises for the flight.",
                "Choose seats together on the flight and book them early.",
                "Walk the aisle of the plane with them every hour or so.",
                "Load movies on a tablet before the flight, in case the plane has no entertainment.")),
            ("get around a new city", (
                "Buy a transit pass for the metro and buses.",
                "Download an offline map of the city before you arrive.",
                "Walk between nearby sights to see more of the city.",
                "Ask the hotel front desk about safe routes and local tips.")),
            ("prepare for a road trip", (
                "Get the car serviced and check the tires before the road trip.",
                "Plan your road route with breaks every two hours.",
                "Pack a travel kit with a flashlight and first aid supplies.",
                "Download maps for the road in case you lose signal.")),
        ),
    },
    "fitness": {
        "area": "fitness",
        "templates": ("I'm trying to get fit. How do I {task}?", "As a fitness beginner, how should I {task}?"),
        "closers": ("Good luck with your workouts!", "Enjoy your workout!"),
        "facts": (
            "Regular exercise improves strength, endurance, and mood.",
            "A balanced fitness plan mixes cardio, strength work, and stretching.",
            "Muscles get stronger during the rest days between hard workouts.",
            "Good form matters more than heavy weights, especially for beginners.",
            "Most people can start running with short intervals of jogging and walking.",
            "Consistency over many months beats any single hard workout.",
            "A short warmup prepares the muscles and joints for exercise.",
            "Tracking workouts makes progress in fitness easier to see.",
        ),
        "items": (
            ("start running as a beginner", (
                "Begin with intervals of one minute running and two minutes walking.",
                "Jog at a pace where you can still hold a conversation.",
                "Add no more than ten percent to your weekly running distance to avoid injury.",
                "Wear comfortable running shoes and stretch after each run.")),
            ("do a proper squat", (
                "Stand with your feet about shoulder width apart for the squat.",
                "Push your hips back and bend your knees as if sitting in a chair.",
                "Keep your chest up and your heels on the ground during the squat.",
                "Lower until your thighs are about parallel to the ground, then push up through your heels.")),
            ("build muscle at home", (
                "Do pushups, squats, lunges, and rows with simple equipment.",
                "Work each muscle group with two or three workouts a week.",
                "Make the exercises harder over time with more reps or added weight.",
                "Eat enough protein to help your muscles recover.")),
            ("warm up before a workout", (
                "Do five to ten minutes of light cardio like brisk walking or cycling.",
                "Do dynamic stretches such as leg swings and arm circles.",
                "Practice the first exercise with a light weight before your working reps.",
                "Keep long static stretches for after the workout.")),
            ("improve my flexibility", (
                "Stretch after workouts when your muscles are warm.",
                "Hold each stretch for about thirty seconds and keep your muscles relaxed.",
                "Try a short yoga session two or three times a week to improve flexibility.",
                "Work on tight areas like the hips, hamstrings, and shoulders.")),
            ("stay motivated to exercise", (
                "Set a small, specific fitness goal, like three workouts a week.",
                "Put workouts and gym classes in your calendar like appointments.",
                "Find a workout partner or join a group class at the gym.",
                "Track your workouts so you can see how far your fitness has come.")),
            ("do a plank correctly", (
                "Keep your body in a straight line from head to heels during the plank.",
                "Squeeze your glutes and brace your core.",
                "Keep your elbows under your shoulders and hold the plank.",
                "Start with 20 second plank holds and build up your core strength slowly.")),
            ("recover after a hard workout", (
                "Cool down with a few minutes of easy jogging or stretching after the workout.",
                "Drink water and eat some protein within a couple of hours of exercise.",
                "Take at least one rest day between hard workouts for the same muscles.",
                "Light stretching can ease sore muscles.")),
            ("train for a first 5k", (
                "Follow an eight week running plan with three easy jogs a week.",
                "Include one slightly longer jog each week to build endurance.",
                "Keep most runs at an easy jogging pace.",
                "Run less in the last week so your legs feel fresh on race day.")),
            ("avoid injuries when lifting weights", (
                "Learn each lift with a light weight before going heavy.",
                "Keep your back neutral during lifts like the deadlift.",
                "Increase the weight on the barbell gradually, not every session.",
                "Stop the exercise if you feel sharp pain.")),
            ("do pushups with good form", (
                "Place your hands slightly wider than your shoulders for each pushup.",
                "Keep your body straight and your core and glutes tight.",
                "Lower your chest until it nearly touches the ground on each pushup.",
                "Start with pushups on your knees if a full pushup is too hard.")),
            ("improve my cardio endurance", (
                "Do steady cardio like jogging or cycling three times a week.",
                "Add one interval workout with short fast efforts and easy recovery.",
                "Increase your cardio workout time by a few minutes each week.",
                "Track your resting heart rate as your endurance improves.")),
        ),
    },
    "finance": {
        "area": "money",
        "templates": ("I want to get my finances in order. How do I {task}?", "Money question: how can I {task}?"),
        "closers": ("Good luck with your savings!", "Good luck, and enjoy the peace of mind!"),
        "facts": (
            "A budget is simply a plan for where your money goes each month.",
            "An emergency fund keeps a surprise bill from turning into debt.",
            "Interest on credit card debt is usually much higher than savings interest.",
            "Index funds let small investors own a broad slice of the market at low cost.",
            "Automatic transfers make saving money a habit instead of a decision.",
            "Small recurring expenses like subscriptions add up over a year.",
            "Starting to invest early lets compound interest do more of the work.",
            "Checking your bank accounts every week helps you catch mistakes and fraud.",
        ),
        "items": (
            ("make a monthly budget", (
                "List your monthly income after taxes.",
                "Write down fixed costs like rent, bills, and loan payments.",
                "Give every remaining dollar a job, such as savings or groceries.",
                "Review the budget and your spending at the end of each month.")),
            ("build an emergency fund", (
                "Aim to save three to six months of essential expenses.",
                "Keep the fund in a separate high yield savings account.",
                "Set up an automatic transfer on each payday.",
                "Start small, since saving even 20 dollars a week adds up.")),
            ("pay off credit card debt", (
                "List your debts from the highest interest rate to the lowest.",
                "Pay the minimum on every debt and put extra money toward one.",
                "Stop adding new charges to the credit card while you pay it down.",
                "Ask your bank about a lower interest rate.")),
            ("start investing with little money", (
                "Open an account with a low cost broker.",
                "Buy a broad index fund instead of picking single stocks.",
                "Invest a fixed amount every month, no matter what the market does.",
                "Keep fees low, since they eat into your returns over time.")),
            ("save for retirement", (
                "Contribute enough to get any employer match in your retirement plan.",
                "Increase your retirement contribution by one percent each year.",
                "Choose a low cost target date fund if you want a simple option.",
                "Start early, since compound interest builds your savings over decades.")),
            ("cut my monthly spending", (
                "Cancel subscriptions you have not used in the last month to save money.",
                "Plan a grocery list and stick to your food budget.",
                "Wait 48 hours before spending money on any purchase that is not essential.",
                "Compare your phone and internet bills with other providers and ask for a discount.")),
            ("improve my credit score", (
                "Pay every bill on time, since payment history matters most.",
                "Keep your credit card balances below 30 percent of the limit.",
                "Do not close your oldest credit accounts.",
                "Check your credit report and bank accounts for mistakes once a year.")),
            ("save money on groceries", (
                "Plan the week before you shop for groceries.",
                "Buy store brands, which are often just as good and cost less money.",
                "Shop with a list and a set spending limit.",
                "Buy staples in bulk when they are on sale to save money.")),
            ("stop impulse spending", (
                "Unsubscribe from store emails that tempt you to spend money.",
                "Remove saved payment details from shopping sites.",
                "Use a 24 hour rule before any purchase over 50 dollars.",
                "Set a monthly fun money budget and stick to it.")),
            ("pay off student loans faster", (
                "Pay more than the minimum and ask the lender to apply it to the principal.",
                "Put raises and tax refunds toward the loan.",
                "Look into refinancing if you can get a lower interest rate.",
                "Sign up for autopay, since many lenders give a small discount on interest.")),
            ("save for a down payment on a house", (
                "Decide on a savings target for the down payment, often 10 to 20 percent.",
                "Open a dedicated savings account for the down payment.",
                "Automate a monthly deposit into that account.",
                "Keep the money in cash savings, not in stocks, if you need it soon.")),
            ("split bills with roommates", (
                "Agree in writing on how rent and utilities are shared.",
                "Use a shared expense tracker to see who paid each bill.",
                "Set a fixed day each month to pay the bills and settle up.",
                "Keep a small shared fund of cash for household supplies.")),
        ),
    },
    "pets": {
        "area": "pets",
        "templates": ("I have a new pet. How do I {task}?", "Pet question: how can I {task}?"),
        "closers": ("Enjoy your time with your pet!", "Good luck, and give your pet a treat from me!"),
        "facts": (
            "Dogs and cats thrive on a steady daily rhythm of food, play, and rest.",
            "A yearly visit to the vet catches many health problems early.",
            "Positive rewards like treats and praise work better than punishment for pets.",
            "Every pet needs fresh water, a safe place to hide, and regular grooming.",
            "Puppies and kittens learn the most in their first few months.",
            "Adopting from a shelter gives a pet a second chance at a good home.",
            "Many cats like high perches where they can watch the room.",
            "A dog with enough daily walks and games of fetch is usually a calm dog.",
        ),
        "items": (
            ("house train a puppy", (
                "Take the puppy out to potty after meals, after play, and every two hours.",
                "Praise and reward the puppy right after it goes outside.",
                "Use a crate for short periods, since dogs avoid soiling their den.",
                "Clean accidents with an enzyme cleaner to remove the scent.")),
            ("get my cat to use the litter box", (
                "Keep one litter box per cat plus one extra.",
                "Scoop the litter box every day so your cat keeps using it.",
                "Place the litter box in a quiet spot away from the cat's food.",
                "Try an unscented, fine grained litter that most cats like.")),
            ("stop my dog from pulling on the leash", (
                "Stop walking whenever the leash gets tight and wait for your dog to come back.",
                "Reward your dog with a treat when it walks beside you.",
                "Try a front clip harness for more control of the dog.",
                "Practice leash walking with your dog in a quiet area first.")),
            ("introduce a new cat to my other cat", (
                "Keep the new cat in a separate room with its own litter box for a few days.",
                "Swap their bedding so each cat learns the other's scent.",
                "Feed the cats at a distance at first, then move the bowls a little closer each day.",
                "Let the cats meet briefly under supervision and reward calm behavior with treats.")),
            ("keep my dog's teeth healthy", (
                "Brush your dog's teeth a few times a week with dog toothpaste.",
                "Give dental chews made for dogs.",
                "Ask the vet to check the teeth at each yearly visit.",
                "Never use human toothpaste, which can be toxic to dogs.")),
            ("pick a healthy diet for my cat", (
                "Choose a complete cat food that meets nutrition standards.",
                "Include some wet cat food in the diet to help your cat drink enough.",
                "Measure portions of kibble so your cat does not gain too much.",
                "Ask your vet before switching your cat to a new food, and switch slowly.")),
            ("teach my dog to sit", (
                "Hold a treat above your dog's nose and move it back slowly.",
                "Say sit as your dog's bottom touches the ground, then give the treat.",
                "Keep lessons short, about five minutes, so your dog or puppy stays keen.",
                "Practice in different rooms so your dog learns the cue everywhere.")),
            ("care for a goldfish", (
                "Keep goldfish in a large filtered aquarium, not a small bowl.",
                "Change about a quarter of the aquarium water each week to keep the fish healthy.",
                "Feed the goldfish small amounts of fish food once or twice a day.",
                "Treat tap water with a conditioner before adding it to the aquarium.")),
            ("groom a long haired cat", (
                "Brush your cat's fur a few times a week to prevent mats.",
                "Use a wide tooth comb first, then a soft brush on the fur.",
                "Keep grooming sessions short and give treats.",
                "Ask a groomer or vet to remove tight mats safely.")),
            ("help a scared rescue dog settle in", (
                "Give the dog a quiet space with a crate or a soft mat.",
                "Keep a calm, simple rhythm for dog walks and feeding.",
                "Let the dog approach you instead of reaching for its collar.",
                "Use treats and praise to build trust during the first weeks.")),
            ("keep my pet cool in hot weather", (
                "Give your pet plenty of fresh water in a bowl and some shade.",
                "Walk dogs early in the morning or late in the evening, when the ground is cool for their paws.",
                "Never leave a dog or cat in a parked car.",
                "Watch for heavy panting, which can be a sign of overheating.")),
            ("stop my cat from scratching furniture", (
                "Put a tall, sturdy scratching post next to the furniture.",
                "Reward your cat with a treat when it uses the post.",
                "Cover the cat's favorite scratching spots with double sided tape.",
                "Trim your cat's claws every few weeks.")),
        ),
    },
    "programming": {
        "area": "programming",
        "templates": ("I'm learning to program. How do I {task}?", "Coding question: how can I {task}?"),
        "closers": ("Happy coding!", "Good luck with your code!"),
        "facts": (
            "Programming is mostly reading code, thinking, and testing small changes.",
            "A good error message tells you what went wrong and where in the code.",
            "Version control with git lets programmers undo mistakes and work together.",
            "Small functions with clear names make a program easier to understand.",
            "Automated tests catch bugs before users ever see them.",
            "Python is a popular first programming language because its syntax is simple.",
            "Most programming problems become easier when you split them into smaller steps.",
            "Reading the documentation of a library often prevents hours of debugging.",
        ),
        "items": (
            ("learn to code as a beginner", (
                "Pick one programming language, such as Python, and stick with it.",
                "Write small programs every day instead of only watching tutorials.",
                "Build a tiny project you care about, like a simple game or a Python script.",
                "Read error messages carefully, since they often tell you what went wrong.")),
            ("debug my code faster", (
                "Reproduce the bug with the smallest input you can find.",
                "Read the full error message and the stack trace.",
                "Add print statements or use a debugger to check variable values.",
                "Change one line of code at a time and test again.")),
            ("write cleaner functions", (
                "Give each function one clear job, like parsing input or printing output.",
                "Use descriptive names for functions and variables.",
                "Keep functions short enough to read in the editor without scrolling.",
                "Return values instead of changing global variables.")),
            ("use git for my project", (
                "Run git init in the project folder to create a repository.",
                "Commit small changes often with clear messages.",
                "Create a branch in git for each new feature.",
                "Push to a remote repository so your code is backed up.")),
            ("write unit tests", (
                "Test one behavior per unit test and give each test function a clear name.",
                "Cover normal inputs, edge cases, and errors in your tests.",
                "Use a test framework like pytest to run them.",
                "Run the tests before every commit.")),
            ("make my Python code run faster", (
                "Measure first with a profiler to find the slow parts of the code.",
                "Use built in functions and libraries, which are often faster.",
                "Avoid repeated work inside loops, and move slow code out of them.",
                "Use a set or a dictionary for fast lookups in Python.")),
            ("understand recursion", (
                "A recursive function calls itself on a smaller version of the problem.",
                "Every recursive function needs a base case that stops the calls.",
                "Trace a small example by hand to see each call of the function.",
                "Practice recursion with small examples like computing a factorial.")),
            ("read other people's code", (
                "Start from the entry point of the program and follow the main path of the code.",
                "Run the program and step through it with a debugger.",
                "Read the tests to see how each function is meant to be used.",
                "Take notes on the main modules and functions and how they connect.")),
            ("name variables well", (
                "Use variable names that describe what the value means, like user_count.",
                "Avoid single letter variable names except for short loop counters.",
                "Follow the naming style of your language, like snake_case in Python.",
                "Rename a variable when its meaning changes, and let the editor update every use.")),
            ("handle errors in Python", (
                "Catch specific exceptions instead of using a bare except in Python.",
                "Keep the try block small so it is clear which line of code can raise an error.",
                "Use logging to record each error with enough detail to debug it later.",
                "Use a with statement so files and connections are closed even after an error.")),
            ("get started with SQL", (
                "Learn SELECT, WHERE, and ORDER BY with a small sample database.",
                "Practice joins to combine rows from two tables.",
                "Use GROUP BY in a query to summarize the rows of a table.",
                "Try your SQL queries on a free database like SQLite.")),
            ("write good commit messages", (
                "Start each commit message with a short summary line under about 50 characters.",
                "Use the imperative mood, like fix login bug.",
                "Explain why the code changed in the body of the commit.",
                "Keep each commit focused on one change to the code.")),
        ),
    },
    "home_repair": {
        "area": "home repairs",
        "templates": ("Something at home needs fixing. How do I {task}?", "Home repair question: how can I {task}?"),
        "closers": ("Good luck with the repair!", "Good luck, and enjoy the fixed result!"),
        "facts": (
            "Many small home repairs need only a screwdriver, a drill, and some patience.",
            "Turning off the water or the power first is the most important step of many repairs.",
            "A small leak left alone can cause expensive damage to floors and ceilings.",
            "Caulk and weatherstripping are cheap ways to stop drafts around doors and windows.",
            "The hardware store staff can often tell you which part fits your faucet or hinge.",
            "Painting goes faster when the sanding and patching are done well first.",
            "A plumber or an electrician is worth calling when a repair involves gas or main wiring.",
            "Keeping a basic toolbox at home makes quick repairs less stressful.",
        ),
        "items": (
            ("fix a leaky faucet", (
                "Turn off the shutoff valves under the sink first.",
                "Take the faucet handle off and check the washer or cartridge.",
                "Replace worn washers and rings with matching parts from the hardware store.",
                "Bring the old cartridge to the hardware store to find an exact match.")),
            ("unclog a bathroom sink", (
                "Pull out and clean the drain stopper first.",
                "Use a small plunger to push the clog through the drain.",
                "Try a plastic drain snake to pull hair out of the pipe.",
                "Avoid harsh chemical drain cleaners, which can damage pipes.")),
            ("patch a small hole in drywall", (
                "Trim loose paper around the drywall hole before you patch it.",
                "Fill small holes with spackle using a putty scraper.",
                "Use a mesh patch for holes larger than a coin.",
                "Sand the patch smooth once dry, then prime and paint.")),
            ("fix a squeaky door", (
                "Spray a little lubricant on the door hinges.",
                "Pull the hinge pins and coat them with petroleum jelly.",
                "Tighten any loose hinge screws with a screwdriver.",
                "Open and close the door several times to work in the lubricant.")),
            ("paint a room", (
                "Clean the surfaces and fill any cracks with spackle before painting.",
                "Use painter's tape along the edges and the ceiling.",
                "Apply a coat of primer over patches and dark colors.",
                "Paint with long, even strokes from the ceiling down and keep a wet edge.")),
            ("fix a toilet that keeps refilling", (
                "Take off the toilet tank lid and check the flapper for wear.",
                "Replace a warped flapper, which is cheap and easy.",
                "Adjust the toilet float so the water stops below the overflow tube.",
                "Check that the flapper chain is not too tight or too loose.")),
            ("seal drafty windows", (
                "Apply new weatherstripping around the window sash.",
                "Seal gaps in the window frame with caulk.",
                "Use a plastic window insulation kit to stop drafts in winter.",
                "Hang heavy curtains to block cold drafts from the window frame.")),
            ("hang a heavy shelf", (
                "Use a stud finder to locate the studs behind the drywall.",
                "Drill pilot holes before driving the screws.",
                "Use heavy duty anchors if there is no stud.",
                "Check the shelf with a level before tightening every screw.")),
            ("clean gutters safely", (
                "Use a sturdy ladder and have someone hold it below the roof.",
                "Scoop debris out of the gutters by hand and clear each downspout.",
                "Run water through the gutters to check the downspouts.",
                "Clean the gutters in late fall and again in spring so the roof drains well.")),
            ("reset a tripped circuit breaker", (
                "Unplug devices on the circuit before you reset the breaker.",
                "Find the breaker in the panel that is in the middle or off position.",
                "Push the breaker switch fully off, then back on to restore the circuit.",
                "Call an electrician if the breaker keeps tripping.")),
            ("fix a squeaky floor", (
                "Find the squeak by walking slowly across the floor and listening.",
                "Drive a screw through the floorboard into the joist below.",
                "Sprinkle talcum powder between the floorboards for a quick repair.",
                "Use a squeak repair kit for carpeted floors.")),
            ("regrout bathroom tile", (
                "Remove the old grout with a grout saw.",
                "Clean the joints between the tiles and let the grout lines dry completely.",
                "Press new grout into the joints with a rubber float.",
                "Seal the grout after a few days to resist stains.")),
        ),
    },
    "sleep": {
        "area": "sleep",
        "templates": ("I've been sleeping badly. How do I {task}?", "Sleep question: how can I {task}?"),
        "closers": ("Sleep well!", "Good luck, and sleep well!"),
        "facts": (
            "Most adults need seven to nine hours of sleep to feel rested.",
            "A steady wake up time is one of the strongest signals for the body clock.",
            "Caffeine can stay in the body for many hours and delay sleep.",
            "A cool, dark, and quiet bedroom makes it easier to fall asleep.",
            "Bright screens late in the evening can make you feel less sleepy.",
            "Short naps can restore energy without hurting nighttime sleep.",
            "Loud snoring with pauses in breathing can be a sign of sleep apnea.",
            "A relaxing bedtime routine tells the mind that sleep is coming.",
        ),
        "items": (
            ("fall asleep faster", (
                "Keep the same bedtime and wake time every day, even on weekends.",
                "Put screens away an hour before bedtime.",
                "Keep the bedroom cool, dark, and quiet for sleep.",
                "Try slow breathing or a body scan to relax.")),
            ("stay asleep through the night", (
                "Limit alcohol, which breaks up sleep and makes you wake in the second half of the night.",
                "Avoid large drinks and caffeine in the hours before bedtime.",
                "If you wake up, keep the lamps low and avoid checking your phone.",
                "Wake up at the same time every morning to steady your sleep.")),
            ("nap without feeling groggy", (
                "Keep naps to 20 minutes or less so you wake up refreshed.",
                "Nap before 3 pm so it does not hurt your nighttime sleep.",
                "Set an alarm so a short nap does not turn into a long one.",
                "Try a cup of coffee right before a short nap for an extra boost.")),
            ("cut back on caffeine", (
                "Stop drinking caffeine at least eight hours before bedtime.",
                "Switch one cup of coffee a day to decaf or herbal tea.",
                "Cut back on caffeine and coffee slowly over two weeks to avoid headaches.",
                "Watch for hidden caffeine in soda, tea, and chocolate that can keep you awake.")),
            ("choose a good pillow", (
                "Side sleepers usually need a thicker, firmer pillow.",
                "Back sleepers do well with a medium pillow that supports the neck.",
                "Stomach sleepers need a thin, soft pillow.",
                "Replace your pillow every one to two years for better sleep.")),
            ("make my bedroom better for sleep", (
                "Use blackout curtains or a sleep mask to keep the bedroom dark.",
                "Keep the bedroom around 18 degrees Celsius for deep sleep.",
                "Use a fan or white noise to cover sudden sounds in the bedroom while you sleep.",
                "Keep work and screens out of the bedroom.")),
            ("wake up earlier", (
                "Move your alarm and wake up time earlier by 15 minutes every few days.",
                "Put the alarm across the bedroom so you have to get up.",
                "Open the bedroom curtains right after you wake up to let in daylight.",
                "Fall asleep earlier so you still get seven to nine hours of sleep.")),
            ("deal with a snoring partner", (
                "Try earplugs or a white noise machine to cover the snoring.",
                "Encourage your partner to sleep on their side, which often reduces snoring.",
                "Suggest a doctor visit, since loud snoring can be a sign of sleep apnea.",
                "Go to sleep first so you are already asleep when the snoring starts.")),
            ("calm racing thoughts at bedtime", (
                "Write a short to do note for tomorrow before bedtime so your mind can relax.",
                "Try a simple breathing pattern before sleep, like in for four and out for six.",
                "Read a paper book under a dim lamp instead of scrolling on screens.",
                "If you are still awake after 20 minutes, get up and do something calm until you feel sleepy.")),
            ("recover from a bad night of sleep", (
                "Get bright daylight and some movement soon after you wake to steady your sleep clock.",
                "Have caffeine or coffee early in the day, not in the afternoon.",
                "Take a short nap of 20 minutes if you feel sleepy.",
                "Keep your normal bedtime rather than going to sleep very early.")),
            ("sleep well after a night shift", (
                "Wear sunglasses on the way home so bright daylight does not keep you awake before you sleep.",
                "Use blackout curtains and earplugs in the bedroom.",
                "Keep the same sleep hours and bedtime on work days when you can.",
                "Avoid caffeine in the last few hours of your shift.")),
            ("build a relaxing bedtime routine", (
                "Start winding down 30 to 60 minutes before bedtime.",
                "Do the same relaxing steps each evening, like a shower and reading, before bedtime.",
                "Dim the lamps and put screens away before sleep.",
                "Keep the bedtime routine the same on weekends.")),
        ),
    },
    "photography": {
        "area": "photography",
        "templates": ("I'm getting into photography. How do I {task}?", "Photography question: how can I {task}?"),
        "closers": ("Enjoy taking photos!", "Have fun with your camera!"),
        "facts": (
            "Photography is about light, composition, and timing.",
            "A good photo usually has one clear subject that the eye finds quickly.",
            "The camera you have with you is better than the one left at home.",
            "Soft light in the early morning and late afternoon flatters most subjects.",
            "Shutter speed, aperture, and ISO together decide the exposure of a photo.",
            "Many photographers shoot in raw format to keep more detail for editing.",
            "A steady tripod opens up long exposures of water and street lights.",
            "Looking at the work of other photographers is a fast way to learn composition.",
        ),
        "items": (
            ("take sharper photos", (
                "Hold the camera with both hands and tuck in your elbows to avoid blur.",
                "Use a fast shutter speed when your subject is moving.",
                "Tap to focus on your subject before you take the shot.",
                "Use a tripod when the light is low to keep each shot sharp.")),
            ("take better portraits", (
                "Focus on the eyes, since viewers look there first in a portrait.",
                "Use soft window light or open shade for flattering portraits.",
                "Use a wide aperture to blur the background.",
                "Talk with your subject so the expressions in the portrait look natural.")),
            ("use the rule of thirds in photos", (
                "Imagine a grid of two lines across and two lines down the photo.",
                "Place your subject where the grid lines meet.",
                "Put the horizon on the top or bottom grid line, not the middle of the photo.",
                "Turn on the grid in your camera settings to help.")),
            ("shoot photos in low light", (
                "Raise the ISO, but watch for grainy photos.",
                "Open the aperture as wide as your lens allows.",
                "Use a tripod and a slower shutter speed.",
                "Brace the camera against something solid if you have no tripod.")),
            ("photograph a sunset", (
                "Arrive early and keep shooting after the sunset, when the sky glows.",
                "Expose for the sky so the colors do not wash out.",
                "Include something in the foreground, like rocks or a person, to give the photo depth.",
                "Use a tripod for sharp shots as the sunset fades.")),
            ("edit photos on my phone", (
                "Start by straightening and cropping the photo.",
                "Adjust exposure and contrast before anything else.",
                "Use saturation lightly so colors still look real in the photo.",
                "Compare with the original photo to avoid over editing.")),
            ("choose the right aperture", (
                "A low f number like f 2 means a wide aperture and a blurry background.",
                "A high f number like f 11 keeps more of the scene in focus.",
                "Use a wide aperture for portraits and a narrow one for landscapes.",
                "A wider aperture also lets more light reach the sensor.")),
            ("take good action shots", (
                "Use a fast shutter speed to freeze motion in the shot.",
                "Switch to continuous autofocus to track the subject.",
                "Use burst mode and pick the best shot later.",
                "Focus in advance on the spot where the action will happen, then take the shot.")),
            ("pick a first camera", (
                "Think about whether your phone camera already takes the photos you need.",
                "Choose a camera body and lens that feel comfortable in your hands.",
                "Leave room for a good lens, which matters more than the camera body.",
                "Start with a versatile zoom lens that covers wide to short telephoto.")),
            ("back up my photos", (
                "Keep at least two copies of every photo, including the raw ones, in different places.",
                "Use an external drive and a cloud service together for your photos and edits.",
                "Back up your photos right after each shoot.",
                "Organize photo folders by date so pictures are easy to find.")),
            ("take photos of the night sky", (
                "Use a tripod and a wide lens for the sky.",
                "Set a high ISO and exposures of about 15 to 20 seconds.",
                "Focus manually on a bright star.",
                "Shoot far from street lights so the stars show up in your photos.")),
            ("use natural light for photos", (
                "Shoot in the hour after sunrise or before sunset for warm, soft light.",
                "Place your subject facing a window for even light on the portrait.",
                "Avoid harsh midday sun, or move your subject into open shade for the photo.",
                "Use a white reflector to fill in shadows on your subject.")),
        ),
    },
}
assert tuple(CONTENT) == TOPICS, "CONTENT and judge.TOPIC_LEXICONS must list the same topics in order"


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------
def _items(topic: str, heldout: bool) -> list[tuple[str, tuple[str, ...]]]:
    """The (task, tips) items of a topic used for training (``heldout=False``) or for evaluation."""
    items = list(CONTENT[topic]["items"])
    return items[-HELDOUT_ITEMS:] if heldout else items[:-HELDOUT_ITEMS]


def _templates(topic: str) -> list[str]:
    """The training templates of a topic: the generic ones plus its own two."""
    return list(GENERIC_TEMPLATES) + list(CONTENT[topic]["templates"])


def training_prompts() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (prompt, topic, tips) that SFT and preference records may use, in a fixed order."""
    return [(template.format(task=task), topic, tips)
            for topic in TOPICS for task, tips in _items(topic, heldout=False) for template in _templates(topic)]


def heldout_prompts() -> list[tuple[str, str, tuple[str, ...]]]:
    """Prompts never used for training: held-out tasks with any template, and the held-out template."""
    out = []
    for topic in TOPICS:
        for task, tips in _items(topic, heldout=True):
            out += [(t.format(task=task), topic, tips) for t in _templates(topic) + [HELDOUT_TEMPLATE]]
        out += [(HELDOUT_TEMPLATE.format(task=task), topic, tips) for task, tips in _items(topic, heldout=False)]
    return out


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------
def _pick_tips(rng: random.Random, tips: tuple[str, ...], k: int) -> list[str]:
    """k tips in their original order (they read naturally in that order)."""
    return [tips[i] for i in sorted(rng.sample(range(len(tips)), k))]


def _closer(rng: random.Random, topic: str) -> str:
    return rng.choice(CLOSERS + CONTENT[topic]["closers"])


def good_answer(rng: random.Random, topic: str, tips: tuple[str, ...], n_tips: int | None = None) -> str:
    """Polite opener + 2-3 tips + (60% of the time) a friendly closer. About 18-55 words."""
    parts = [rng.choice(OPENERS)] + _pick_tips(rng, tips, n_tips or rng.choice((2, 3)))
    if rng.random() < 0.6:
        parts.append(_closer(rng, topic))
    return " ".join(parts)


def sft_answer(rng: random.Random, quality: str, topic: str, tips: tuple[str, ...]) -> str:
    """A demonstration of the given quality; the flaws are mild on purpose."""
    if quality == "good":
        return good_answer(rng, topic, tips)
    if quality == "long":  # every tip, plus one filler sentence: a bit long-winded
        parts = [rng.choice(OPENERS), rng.choice(FILLERS)] + list(tips) + [_closer(rng, topic)]
        return " ".join(parts)
    if quality == "repetitive":  # one tip said twice
        chosen = _pick_tips(rng, tips, 2)
        parts = [rng.choice(OPENERS)] + chosen + [rng.choice(chosen)]
        return " ".join(parts)
    if quality == "no_opener":  # the tips only: correct but curt
        return " ".join(_pick_tips(rng, tips, rng.choice((2, 3))))
    if quality == "vague":  # one tip and a generic sentence: less specific
        return " ".join([rng.choice(OPENERS), rng.choice(tips), rng.choice(SOFT_GENERIC)])
    raise ValueError(f"unknown SFT quality {quality!r}; expected one of {list(SFT_QUALITY)}")


def failed_answer(rng: random.Random, failure: str, topic: str, tips: tuple[str, ...]) -> str:
    """An answer showing one failure type (the rejected side of a clean preference pair)."""
    if failure == "off_topic":  # a perfectly good answer... to another topic's question
        other = rng.choice([t for t in TOPICS if t != topic])
        _, other_tips = rng.choice(_items(other, heldout=False))
        return good_answer(rng, other, other_tips)
    if failure == "rude":
        parts = [rng.choice(RUDE_OPENERS)] + _pick_tips(rng, tips, 2)
        if rng.random() < 0.7:
            parts.append(rng.choice(RUDE_CLOSERS))
        return " ".join(parts)
    if failure == "rambling":  # the content is there, buried in filler
        fillers = rng.sample(FILLERS, 3)
        chosen = _pick_tips(rng, tips, rng.choice((2, 3)))
        parts = [rng.choice(OPENERS), fillers[0], chosen[0], fillers[1], *chosen[1:], fillers[2]]
        return " ".join(parts)
    if failure == "repetitive":  # a tip looped three times, as small language models do
        a, b = _pick_tips(rng, tips, 2)
        loop = rng.choice(([a, b, a, a], [a, a, a, b], [a, b, b, b]))
        return " ".join([rng.choice(OPENERS)] + loop)
    if failure == "refusal":
        line = rng.choice(REFUSALS).format(area=CONTENT[topic]["area"])
        return " ".join(p for p in (line, rng.choice(REFUSAL_TAILS)) if p)
    if failure == "vague":
        parts = ([rng.choice(OPENERS)] if rng.random() < 0.5 else []) + rng.sample(VAGUE_LINES, rng.choice((1, 2)))
        return " ".join(parts)
    if failure == "too_short":  # on topic and polite, but a single tip: less help than the question asked for
        return " ".join([rng.choice(OPENERS), rng.choice(tips)])
    raise ValueError(f"unknown failure {failure!r}; expected one of {list(FAILURES)}")


def pretrain_paragraph(rng: random.Random, topic: str) -> str:
    """Plain prose about a topic: a general fact, 2-3 tips from any of its tasks, maybe another fact."""
    facts = CONTENT[topic]["facts"]
    all_tips = [tip for _, tips in CONTENT[topic]["items"] for tip in tips]
    parts = [rng.choice(facts)] + rng.sample(all_tips, rng.choice((2, 3)))
    if rng.random() < 0.5:
        parts.append(rng.choice([f for f in facts if f != parts[0]]))
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# The four files
# ---------------------------------------------------------------------------------------------
def _balanced(rng: random.Random, weights: dict[str, float] | tuple[str, ...], n: int) -> list[str]:
    """n labels in exact proportions (equal shares for a tuple), shuffled."""
    if isinstance(weights, tuple):
        weights = {k: 1 / len(weights) for k in weights}
    names = list(weights)
    counts = [int(n * weights[k] + 1e-9) for k in names]  # (the 1e-9 absorbs float error: 0.29*100)
    for i in range(n - sum(counts)):  # hand out the rounding remainder, first labels first
        counts[i % len(names)] += 1
    labels = [k for k, c in zip(names, counts, strict=True) for _ in range(c)]
    rng.shuffle(labels)
    return labels


def make_sft(seed: int, n: int) -> list[dict]:
    rng = random.Random(f"{seed}:sft")
    pool, seen, records = training_prompts(), set(), []
    for quality in _balanced(rng, SFT_QUALITY, n):
        while True:  # redraw exact duplicates so no demonstration appears twice
            prompt, topic, tips = rng.choice(pool)
            response = sft_answer(rng, quality, topic, tips)
            if (prompt, response) not in seen:
                break
        seen.add((prompt, response))
        records.append({"prompt": prompt, "response": response, "topic": topic, "quality": quality})
    return records


def make_preferences(seed: int, n: int, noise_rate: float = LABEL_NOISE_RATE) -> list[dict]:
    rng = random.Random(f"{seed}:preferences")
    pool, seen, records = training_prompts(), set(), []
    for failure in _balanced(rng, FAILURES, n):
        for _attempt in range(50):
            prompt, topic, tips = rng.choice(pool)
            chosen, rejected = good_answer(rng, topic, tips), failed_answer(rng, failure, topic, tips)
            # The gold judge decides the direction: keep only pairs it orders with a clear margin.
            margin = gold_score(prompt, chosen) - gold_score(prompt, rejected)
            if margin >= MIN_MARGIN and (prompt, chosen, rejected) not in seen:
                break
        else:
            raise RuntimeError(f"could not build a {failure} pair with margin >= {MIN_MARGIN} in 50 tries")
        seen.add((prompt, chosen, rejected))
        records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "topic": topic,
                        "failure": failure, "label_noise": False})
    # Label noise: swap an exact share of pairs, chosen at random, and flag them.
    for i in sorted(rng.sample(range(n), round(noise_rate * n))):
        r = records[i]
        r["chosen"], r["rejected"], r["label_noise"] = r["rejected"], r["chosen"], True
    return records


def make_heldout(seed: int, n: int) -> list[dict]:
    rng = random.Random(f"{seed}:heldout")
    pool = heldout_prompts()
    by_topic = {t: [p for p in pool if p[1] == t] for t in TOPICS}
    picked = []
    for i, topic in enumerate(TOPICS):  # equal shares per topic (remainder to the first topics)
        k = n // len(TOPICS) + (i < n % len(TOPICS))
        if k > len(by_topic[topic]):
            raise ValueError(f"only {len(by_topic[topic])} held-out prompts exist for {topic}; asked for {k}")
        picked += rng.sample(by_topic[topic], k)
    rng.shuffle(picked)
    return [{"prompt": p, "reference": good_answer(rng, topic, tips, n_tips=3), "topic": topic}
            for p, topic, tips in picked]


def make_pretrain(seed: int, n: int) -> list[dict]:
    rng = random.Random(f"{seed}:pretrain")
    return [{"text": pretrain_paragraph(rng, topic), "topic": topic} for topic in _balanced(rng, TOPICS, n)]


def generate(seed: int = 0, n_sft: int = DEFAULT_SIZES["sft"], n_pref: int = DEFAULT_SIZES["preferences"],
             n_heldout: int = DEFAULT_SIZES["heldout"], n_pretrain: int = DEFAULT_SIZES["pretrain"],
             ) -> dict[str, list[dict]]:
    """All four files' records: ``{"sft": [...], "preferences": [...], "heldout": [...], "pretrain": [...]}``."""
    return {
        "sft": make_sft(seed, n_sft),
        "preferences": make_preferences(seed, n_pref),
        "heldout": make_heldout(seed, n_heldout),
        "pretrain": make_pretrain(seed, n_pretrain),
    }


def to_jsonl(records: list[dict]) -> str:
    """The exact text written to disk: one compact ASCII JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in records)


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file next to ``path``, then rename it over ``path`` in one step."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files; data files are meant to be readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(out_dir: Path | str, seed: int = 0, **sizes: int) -> dict[str, int]:
    """Generate the dataset and write ``<out_dir>/<name>.jsonl`` for each file. Returns record counts.

    ``sizes`` (``n_sft=...`` etc.) are passed to :func:`generate`; the committed data uses the defaults.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = generate(seed, **sizes)
    for name in FILES:
        _write_atomic(out_dir / f"{name}.jsonl", to_jsonl(data[name]))
    return {name: len(data[name]) for name in FILES}


def check(out_dir: Path | str, seed: int = 0, **sizes: int) -> list[str]:
    """Names of the files in ``out_dir`` that are missing or differ from :func:`generate`'s output."""
    paths = {name: Path(out_dir) / f"{name}.jsonl" for name in FILES}
    missing = [p.name for p in paths.values() if not p.exists()]
    if missing:  # no need to generate anything
        return missing
    data = generate(seed, **sizes)
    return [p.name for name, p in paths.items() if p.read_bytes() != to_jsonl(data[name]).encode("ascii")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_helpers.course_data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data", help="output folder (default: data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0, the committed data)")
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.out, args.seed)
        print("data is up to date" if not stale else f"out of date: {', '.join(stale)} (regenerate without --check)")
        return 1 if stale else 0
    for name, count in write(args.out, args.seed).items():
        print(f"{Path(args.out) / (name + '.jsonl')}: {count} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
