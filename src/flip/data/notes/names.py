"""Word lists the name rules use: common given names in the UK, and name words that are also
ordinary English words (which count as names only where a name context says so)."""

from __future__ import annotations

#: Given names common among people in the UK (ONS birth registrations over the decades, and
#: names common in the UK's South Asian, African, Caribbean, Chinese and Eastern European
#: communities). A capitalised word after one of these is read as a family name.
_GIVEN = """
    Aaliyah Aaron Abdul Abigail Adam Adebayo Ahmed Aidan Aisha Alan Albert Alex Alexander
    Alexandra Ali Alice Alison Amanda Amara Amelia Amir Amy Andrew Angela Anil Anita Ann Anna
    Anne Anthony Archie Arjun Arthur Ashley Asif Aya Ayesha Barbara Barry Ben Benjamin Beth
    Bethany Bilal Brian Bronwen Callum Carl Carol Caroline Catherine Charles Charlie Charlotte
    Chen Chi Chidi Chinedu Chloe Chris Christine Christopher Claire Colin Connor Craig Dafydd
    Daniel Darren David Dawn Deborah Deepak Denise Derek Diane Dominika Donna Dorothy Duncan
    Dylan Edward Eilidh Eleanor Elizabeth Ella Ellie Emily Emma Eric Ethan Ewa Faith Fatima Fiona
    Florence Frances Francesca Freya Gareth Gary Gemma George Georgia Gillian Grace Graham
    Gurpreet Hamza Hannah Harjit Harpreet Harry Harvey Hassan Hayley Heather Helen Henry Hope Hui
    Ian Ibrahim Imran Isaac Isabella Isla Ivy Jack Jacob Jacqueline Jade Jakub James Jamie Jan
    Jane Janet Jasmine Jason Jennifer Jessica Jiahui Joan Joanne John Jonathan Joseph Joshua
    Joy Joyce Julie Karen Katarzyna Kate Katherine Kathleen Katie Kayode Keith Kelly Kenneth Kevin
    Kieran Kirsty Kwame Kwabena Laura Lauren Leah Lee Leon Lewis Liam Lily Linda Lisa Logan
    Louise Lucy Luke Lynne Maciej Mandeep Manjit Marcus Margaret Maria Marie Mark Martin Mary
    Matthew Megan Mei Melanie Michael Michelle Mohammed Mohammad Muhammad Nadia Naomi Natalie
    Nathan Neil Nicholas Nicola Nikhil Noah Olivia Oliver Olumide Oscar Owen Pamela Patricia
    Patrick Paul Pauline Peter Philip Piotr Poppy Priya Rachel Rahul Raj Rajesh Rebecca Rhys
    Richard Robert Rose Ruby Rukhsana Ryan Samantha Samuel Sandra Sarah Scott Sean Sharon Shauna
    Simon Siobhan Sophie Stephen Steven Stuart Susan Tariq Teresa Thomas Tomasz Tracey Tyler
    Usman Valerie Vanessa Victoria Vikram Wei William Xin Yasmin Yusuf Zainab Zara Zoe
"""

#: Name words that are also ordinary words; a repeat of one counts only when capitalised
#: mid-sentence, never in lower case ("brown plaques", "mark the lesion", "rose-coloured").
_COMMON = """
    baker bell bird black brown carter cook dawn faith fox grace green hall hart hill hope
    house joy king lane mark may miles moon page park price rich rose summer sunny white will
    wood young long little short north south west
"""

GIVEN_NAMES = frozenset(_GIVEN.split())
COMMON_WORD_NAMES = frozenset(_COMMON.split())
