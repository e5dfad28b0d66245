from django.urls import path

from memapp import views

urlpatterns = [path("", views.table)]
